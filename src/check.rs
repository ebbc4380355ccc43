//! `tenantgate check`: validate a config and print a one-screen summary.

use std::process::ExitCode;

use tenantgate::config::Overrides;

use crate::load;

pub fn run(path: &std::path::Path) -> ExitCode {
    let snapshot = match load(path, &Overrides::default()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let c = &snapshot.config;
    println!("{}: ok", snapshot.origin);
    println!("  identity  header mode, tenant from {}", c.identity.header);
    println!("  listen    {} (admin {})", c.listen.addr, c.admin.addr);
    println!(
        "  upstream  {}://{}{} (timeout {:?}, retries {})",
        c.upstream.origin,
        c.upstream.authority,
        c.upstream.base_path,
        c.upstream.timeout,
        c.upstream.retries
    );
    println!(
        "  tenants   namespace {}, separator {:?}, unscoped {}, leak guard {}",
        c.namespaces.pattern(),
        c.namespaces.separator(),
        format!("{:?}", c.namespaces.unscoped).to_lowercase(),
        if c.leak_guard { "on" } else { "OFF" }
    );
    println!("  routes    {}", c.routes.len());
    for route in c.routes.iter() {
        println!(
            "    {:<10} {:<40} {}",
            format!("{:?}", route.scope).to_lowercase(),
            route.match_text,
            route.name
        );
    }
    let passthrough: Vec<&str> = c
        .routes
        .iter()
        .filter(|r| r.response.passthrough)
        .map(|r| r.name.as_str())
        .collect();
    if !passthrough.is_empty() {
        println!(
            "  passthrough (answers reach the caller uninspected): {}",
            passthrough.join(", ")
        );
    }
    if !c.tenants.is_empty() {
        println!("  tenants   {} configured", c.tenants.len());
    }
    for warning in &c.warnings {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}
