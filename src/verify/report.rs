//! What a verify run found, per scenario and probe: as a table for people, as JSON for
//! CI and for `POST /admin/verify`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// What must hold held: no marker where it must not be, the expected status.
    Held,
    /// The marker reached an answer it must never reach.
    Leaked,
    /// The probe could not be judged (an unexpected status, a missing capture, a's own
    /// data not reading back): not proof of a leak, but not proof of isolation either.
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// `a`, `b` or `none`.
    #[serde(rename = "as")]
    pub who: String,
    pub request: String,
    pub status: Option<u16>,
    pub verdict: Verdict,
    /// The offending bytes of a leak, or what went wrong.
    pub detail: Option<String>,
}

impl StepReport {
    pub fn error(mut self, detail: String) -> Self {
        self.verdict = Verdict::Error;
        self.detail = Some(detail);
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub held: bool,
    /// What canary a wrote, and b must never see.
    pub marker: String,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioReport>,
    /// Offboarding the canaries after the run, when it failed.
    pub cleanup: Vec<String>,
}

impl Report {
    /// Everything held, and there was something to hold.
    pub fn held(&self) -> bool {
        !self.scenarios.is_empty()
            && self.scenarios.iter().all(|s| s.held)
            && self.cleanup.is_empty()
    }

    pub fn failed(&self) -> Vec<&str> {
        self.scenarios
            .iter()
            .filter(|s| !s.held)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// One line per probe, a verdict per scenario, the offending bytes under a leak.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.scenarios.is_empty() {
            out.push_str("no [[verify.scenario]] in the config: nothing was proved\n");
        }
        for scenario in &self.scenarios {
            let verdict = if scenario.held { "held" } else { "FAILED" };
            out.push_str(&format!(
                "scenario {} ({verdict}, marker {})\n",
                scenario.name, scenario.marker
            ));
            for step in &scenario.steps {
                let status = step.status.map_or("-".to_owned(), |s| s.to_string());
                let verdict = match step.verdict {
                    Verdict::Held => "held",
                    Verdict::Leaked => "LEAKED",
                    Verdict::Error => "error",
                };
                out.push_str(&format!(
                    "  {verdict:<7} as {:<4} {status:>3}  {}\n",
                    step.who, step.request
                ));
                if let Some(detail) = &step.detail {
                    out.push_str(&format!("          {detail}\n"));
                }
            }
        }
        for line in &self.cleanup {
            out.push_str(&format!("cleanup: {line}\n"));
        }
        let summary = match self.held() {
            true => "isolation held".to_owned(),
            false if self.scenarios.is_empty() => "nothing verified".to_owned(),
            false => format!("isolation NOT proved: {}", self.failed().join(", ")),
        };
        out.push_str(&summary);
        out.push('\n');
        out
    }
}
