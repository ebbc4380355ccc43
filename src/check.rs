//! `tenantgate check`: validate a config and print a one-screen summary.

use std::process::ExitCode;

use tenantgate::config::Overrides;

use crate::load;

/// `println!` that ignores a closed stdout (`tenantgate check | head`) instead of
/// panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub fn run(path: &std::path::Path) -> ExitCode {
    let snapshot = match load(path, &Overrides::default()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let c = &snapshot.config;
    out!("{}: ok", snapshot.origin);
    print_identity(&c.identity);
    out!("  listen    {} (admin {})", c.listen.addr, c.admin.addr);
    let https = |tls: &Option<tenantgate::listen::tls::ServerTls>| match tls {
        None => "plain HTTP",
        Some(t) if t.client_certs => "HTTPS, client certificates required (client_ca)",
        Some(_) => "HTTPS",
    };
    out!(
        "    tls     proxy {}; admin {}",
        https(&c.listen.tls),
        https(&c.admin.tls)
    );
    out!(
        "  upstream  {}://{}{} (timeout {:?}, retries {})",
        c.forward.upstream.origin,
        c.forward.upstream.authority,
        c.forward.upstream.base_path,
        c.forward.upstream.timeout,
        c.forward.upstream.retries
    );
    out!(
        "  tenants   namespace {}, separator {:?}, unscoped {}, leak guard {}",
        c.namespaces.pattern(),
        c.namespaces.separator(),
        format!("{:?}", c.namespaces.unscoped).to_lowercase(),
        if c.respond.leak_guard { "on" } else { "OFF" }
    );
    if let Some(tls) = &c.forward.upstream.tls {
        out!("    tls     {}", tenantgate::forward::tls::describe(tls));
    }
    print_limits(c);
    match &c.store.redis {
        None => out!(
            "  store     embedded, {} (flush {:?}): this replica's own limits and usage",
            c.store.path.display(),
            c.store.flush
        ),
        Some(redis) => out!(
            "  store     redis {} (flush {:?}, timeout {:?}, on_store_error {}, replicas {}): shared by every replica",
            redis.redacted_url(),
            c.store.flush,
            redis.timeout,
            redis.on_error.name(),
            redis.replicas
        ),
    }
    out!("  routes    {}", c.route.table.len());
    for route in c.route.table.iter() {
        out!(
            "    {:<10} {:<40} {}",
            format!("{:?}", route.scope).to_lowercase(),
            route.match_text,
            route.name
        );
    }
    let passthrough: Vec<&str> = c
        .route
        .table
        .iter()
        .filter(|r| c.rules(r).is_some_and(|rules| rules.respond.passthrough))
        .map(|r| r.name.as_str())
        .collect();
    if !passthrough.is_empty() {
        out!(
            "  passthrough (answers reach the caller uninspected): {}",
            passthrough.join(", ")
        );
    }
    if !c.respond.configured.is_empty() {
        out!("  tenants   {} configured", c.respond.configured.len());
    }
    let scenarios: Vec<&str> = c.verify.scenarios.iter().map(|s| s.name.as_str()).collect();
    match (scenarios.is_empty(), c.verify.interval) {
        (true, _) => {
            out!("  verify    no [[verify.scenario]]: `tenantgate verify` has nothing to prove")
        }
        (false, Some(every)) => {
            out!(
            "  verify    {} ({} steps), in the proxy every {every:?} and by `tenantgate verify`",
            scenarios.join(", "),
            c.verify.scenarios.iter().map(|s| s.steps.len()).sum::<usize>()
        )
        }
        (false, None) => out!(
            "  verify    {} ({} steps), by `tenantgate verify` ([verify] interval is off)",
            scenarios.join(", "),
            c.verify
                .scenarios
                .iter()
                .map(|s| s.steps.len())
                .sum::<usize>()
        ),
    }
    for warning in &c.warnings {
        out!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn print_identity(identity: &tenantgate::identity::IdentitySettings) {
    use tenantgate::identity::Proof;
    match &identity.proof {
        Proof::Header => out!(
            "  identity  header mode, tenant from {} (trusted as sent)",
            identity.header
        ),
        Proof::Jwt(jwt) => {
            out!(
                "  identity  jwt mode, Bearer token in {}, tenant from claim {}",
                jwt.header,
                jwt.claim
            );
            out!("    keys    {}", jwt.describe_keys());
            out!(
                "    checks  exp required, nbf, leeway {} s, issuer {}, audience {}",
                jwt.leeway_secs,
                jwt.issuer.as_deref().unwrap_or("any"),
                jwt.audience.as_deref().unwrap_or("any")
            );
            out!(
                "    {} must match the token's tenant when sent",
                identity.header
            );
        }
        Proof::ApiKey(keys) => {
            out!(
                "  identity  api_key mode, key in {}, {} key(s) from keys_file {}",
                keys.header,
                keys.keys.len(),
                keys.path.display()
            );
            out!(
                "    {} must match the key's tenant when sent",
                identity.header
            );
        }
    }
}

fn print_limits(c: &tenantgate::config::Config) {
    use tenantgate::limits::plan::Plan;
    let describe = |p: &Plan| {
        let mut parts = Vec::new();
        if let Some(rate) = p.rate {
            parts.push(format!(
                "burst {} refilled over {:?}",
                rate.burst(),
                std::time::Duration::from_nanos(rate.window())
            ));
        }
        if let Some(n) = p.max_concurrent {
            parts.push(format!("{n} in flight"));
        }
        if let Some(n) = p.daily_units {
            parts.push(format!("{n} units/day"));
        }
        if let Some(n) = p.soft_units {
            parts.push(format!("degrades from {n}"));
        }
        if let Some(q) = p.queue {
            parts.push(format!("queue {} for {:?}", q.max_queue, q.max_wait));
        }
        if parts.is_empty() {
            "unlimited".to_owned()
        } else {
            parts.join(", ")
        }
    };
    match &c.limits.default_plan {
        Some(plan) => out!("  plans     default {:?}: {}", plan.name, describe(plan)),
        None => out!("  plans     no default plan: tenants without one are not limited"),
    }
    for (id, plan) in &c.limits.tenants {
        out!(
            "    tenant {id:?}: plan {:?}, {}",
            plan.name,
            describe(plan)
        );
    }
    let project = &c.limits.project;
    if project.rate.is_some() || project.daily_units.is_some() {
        out!(
            "  project   bucket {}, {} units/day{}",
            project
                .rate
                .map_or("unlimited".to_owned(), |r| format!("burst {}", r.burst())),
            project
                .daily_units
                .map_or("unlimited".to_owned(), |n| n.to_string()),
            project
                .degrade_units
                .map_or(String::new(), |n| format!(", degrades from {n}"))
        );
    }
}
