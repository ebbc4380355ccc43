//! Any answer through the response pass (keep, guard, unwrap, unprepend, learn,
//! ids_at) for alice:
//! it never panics, and what it delivers is valid JSON to the parser that accepted the
//! answer (jiter: numbers of any size, which serde_json without arbitrary precision
//! refuses, are forwarded byte for byte).
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use tenantgate::json::pointer::Pointer;
use tenantgate::namespace::{NamespaceScheme, Unscoped};
use tenantgate::respond::json::{process, Keep, KeepBy, Processed, ResponseRules};
use tenantgate::respond::Recipient;
use tenantgate::tenants::KnownTenants;

fuzz_target!(|body: &[u8]| {
    let scheme = NamespaceScheme::new("u_{tenant}", "__", None, Unscoped::Reject, "main").unwrap();
    let known = KnownTenants::default();
    let records = tenantgate::store::records::Records::in_memory();
    known.note("bob");
    let configured = BTreeSet::new();
    let recipient = Recipient {
        namespaces: &scheme,
        root: "u_alice",
        tenant: Some("alice"),
        guard: true,
        configured: &configured,
        known: &known,
        records: &records,
    };
    let rules = ResponseRules {
        unwrap: true,
        keep: Some(Keep {
            items: Pointer::parse("/**/items").unwrap(),
            owner: Pointer::parse("/owner").unwrap(),
            by: KeepBy::Namespace,
        }),
        unprepend: vec![Pointer::parse("/**/ns").unwrap()],
        learn: vec![(Pointer::parse("/**/id").unwrap(), "c".into())],
        // Half the inputs with the guard and unwrap confined to id fields.
        ids_at: (body.len() % 2 == 0).then(|| vec![Pointer::parse("/**/tenant").unwrap()]),
    };
    if let Ok(Processed { body: Some(out), .. }) = process(body, &rules, &recipient) {
        let mut jiter = jiter::Jiter::new(&out);
        jiter.next_skip().expect("delivered JSON is valid");
        jiter.finish().expect("nothing after the delivered document");
    }
});
