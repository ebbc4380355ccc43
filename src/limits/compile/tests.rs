use super::*;
use crate::spec::compile_str;

/// The tables stage 3 reads, as the file writes them.
#[derive(Deserialize)]
struct Tables {
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    tenants: BTreeMap<String, Tenant>,
    #[serde(default)]
    route: Vec<Route>,
}

#[derive(Deserialize, Default)]
struct Limits {
    default_plan: Option<String>,
    #[serde(default)]
    plans: BTreeMap<String, PlanTable>,
    #[serde(default)]
    project: ProjectSpec,
}

#[derive(Deserialize)]
struct Tenant {
    plan: Option<String>,
    #[serde(flatten)]
    overrides: PlanSpec,
}

#[derive(Deserialize)]
struct Route {
    cost: Option<u64>,
    #[serde(default)]
    degradable: bool,
    degrade: Option<DegradeSpec>,
}

fn compiled(toml: &str) -> Result<Compiled, Vec<String>> {
    compile_str(toml, |t: &Tables, errors| {
        let spec = LimitsSpec {
            default_plan: t.limits.default_plan.as_deref(),
            plans: &t.limits.plans,
            project: &t.limits.project,
            tenants: t
                .tenants
                .iter()
                .map(|(id, t)| TenantLimits {
                    id,
                    plan: t.plan.as_deref(),
                    overrides: &t.overrides,
                })
                .collect(),
            routes: t
                .route
                .iter()
                .map(|r| RouteLimitsSpec {
                    matched: true,
                    cost: r.cost,
                    held: 1,
                    degradable: r.degradable,
                    degrade: r.degrade.as_ref(),
                })
                .collect(),
        };
        Some(compile(&spec, errors))
    })
}

#[test]
fn compiles_plans_overrides_the_project_and_routes() {
    let c = compiled(
        r#"[limits]
default_plan = "free"
[limits.plans.free]
rate = 10
burst = 20
daily_units = 100
soft_cap = 0.8
[limits.plans.pro]
rate = 100
overflow = "queue"
[limits.project]
rate = 1000
daily_units = 10000
degrade_at = 0.9
[tenants.alice]
plan = "pro"
max_concurrent = 4
[tenants.bob]
[tenants.carol]
rate = 5
[[route]]
cost = 5
degradable = true
degrade = { body = "{}" }
[[route]]
"#,
    )
    .unwrap();
    let free = c.settings.default_plan.as_ref().unwrap();
    assert_eq!((free.name.as_str(), free.soft_units), ("free", Some(80)));
    assert_eq!(free.rate.map(|r| r.burst()), Some(20));
    let alice = &c.settings.tenants["alice"];
    assert_eq!(
        (alice.name.as_str(), alice.max_concurrent),
        ("pro", Some(4))
    );
    assert_eq!(
        alice.queue.map(|q| q.max_queue),
        Some(32),
        "the default queue"
    );
    assert_eq!(
        c.settings.tenants["bob"].name, "free",
        "bob runs the default plan"
    );
    assert_eq!(c.settings.project.degrade_units, Some(9000));
    assert_eq!(c.routes[0].cost, 5);
    let degrade = c.routes[0].degrade.as_ref().unwrap();
    assert_eq!(
        (degrade.status.as_u16(), &degrade.body[..]),
        (200, &b"{}"[..])
    );
    assert!(c.routes[1].degrade.is_none() && c.routes[1].cost == 1);
}

#[test]
fn refuses_each_bad_limit_at_its_key() {
    let errors = compiled(
        r#"[limits]
default_plan = "gold"
[limits.plans.free]
rate = 10
soft_cap = 1.5
overflow = "queue"
[limits.plans.q]
overflow = "queue"
daily_unit = 10
[limits.project]
degrade_at = 0.5
[tenants.alice]
plan = "nope"
[[route]]
cost = 0
[[route]]
degradable = true
[[route]]
degrade = { body = "x" }
[[route]]
degradable = true
degrade = { status = 101, body = "x" }
"#,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            "5:12: must be a fraction in (0, 1]",
            "9:14: unknown key \"daily_unit\" in [limits.plans.q]",
            "8:12: overflow = \"queue\" needs a rate",
            "2:16: default_plan \"gold\" is not a [limits.plans] entry",
            "11:14: degrade_at needs [limits.project] daily_units",
            "13:8: plan \"nope\" is not a [limits.plans] entry",
            "15:8: cost must be at least 1",
            "17:14: degradable = true needs a [route.degrade] answer (status, body)",
            "19:11: [route.degrade] is used only with degradable = true",
            "22:11: degrade needs a final HTTP status and a valid content_type",
        ]
    );
}

#[test]
fn a_tenant_overriding_no_plan_is_never_named_by_its_id() {
    let c = compiled("[tenants.alice]\nrate = 5\n").unwrap();
    assert_eq!(c.settings.tenants["alice"].name, OVERRIDE_POLICY);
}

#[test]
fn a_cost_no_bucket_can_pay_is_refused() {
    let errors = compiled(
        "[limits.plans.free]\nrate = 10\nburst = 3\n[[route]]\ncost = 4\n[[route]]\ncost = 3\n",
    )
    .unwrap_err();
    assert_eq!(
        errors,
        ["5:8: cost 4 is more than the burst 3 of plan \"free\": the route could never be served"]
    );
}
