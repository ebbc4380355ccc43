//! Any string through the namespace classifier: it never panics, and a string it
//! classifies as a tenant's root or id is exactly that root or id re-encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantgate::identity::TenantId;
use tenantgate::namespace::{Classified, NamespaceScheme, Unscoped};

fuzz_target!(|text: &str| {
    let ns = NamespaceScheme::new("u_{tenant}", "__", None, Unscoped::Reject, "main").unwrap();
    match ns.classify(text) {
        Classified::Root { tenant } => {
            if let Ok(t) = TenantId::parse(&tenant, None) {
                assert_eq!(ns.root(&t).unwrap(), text);
            }
        }
        Classified::Namespaced { tenant, id } => {
            if let Ok(t) = TenantId::parse(&tenant, None) {
                assert_eq!(ns.namespaced(&ns.root(&t).unwrap(), id), text);
            }
        }
        Classified::Other => {}
    }
});
