//! Every XML body the gateway parses: CompleteMultipartUpload, DeleteObjects, lifecycle, CORS,
//! object and bucket tagging, versioning, Object Lock configuration and retention, bucket encryption,
//! ACLs (AccessControlPolicy, which must read back as it renders), and the generic tree parser
//! under most of them; and
//! the one JSON body, bucket policies (parsed, then evaluated). Each input goes to all of them:
//! each checks its own root element. `scripts/fuzz.sh` lets this
//! target's inputs grow to 256 KiB, so that deep nesting (once a stack overflow) is explored.
#![no_main]

use gateway::fuzzing::{acl, cors, encryption, lifecycle, multi_delete, object_lock, policy, tagging, versioning, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = xml::parse_complete_parts(data) {
        assert!(!parts.is_empty());
        for part in &parts {
            assert!(!part.etag.starts_with('"') && !part.etag.ends_with('"'));
        }
    }
    if let Ok(tree) = xml::parse_tree(data, "Root") {
        assert_eq!(tree.name, "Root");
    }
    if let Ok((_, targets)) = multi_delete::parse(data) {
        assert!(!targets.is_empty() && targets.len() <= 1000);
    }
    if let Ok(rules) = lifecycle::parse(data) {
        assert!(!rules.is_empty() && rules.len() <= 1000);
    }
    if let Ok(rules) = cors::parse(data) {
        assert!(!rules.is_empty() && rules.len() <= 100);
        for rule in &rules {
            assert!(!rule.allowed_origins.is_empty() && !rule.allowed_methods.is_empty());
        }
    }
    for max in [10, 50] {
        if let Ok(tags) = tagging::parse(data, max) {
            assert!(tags.len() <= max);
        }
    }
    let _ = versioning::parse(data);
    for enabled in [false, true] {
        let _ = object_lock::parse_configuration(data, enabled);
    }
    let _ = object_lock::parse_retention(data);
    let _ = encryption::parse(data);
    // (Control characters aside, as for the writer below.)
    let plain = |g: &acl::AclGrant| !matches!(&g.grantee, acl::Grantee::User(id) if id.chars().any(char::is_control));
    if let Some((_, grants)) = acl::parse_policy(data).ok().filter(|(_, grants)| grants.iter().all(plain)) {
        let rendered = acl::render("owner", &grants).finish();
        let (owner, again) = acl::parse_policy(rendered.as_bytes()).expect("a rendered ACL parses");
        assert_eq!((owner.as_deref(), again), (Some("owner"), grants));
    }
    if let Ok(parsed) = policy::Policy::parse("b", data) {
        for key in [None, Some("k"), Some("public/a/b.css")] {
            let _ = parsed.evaluate(&policy::Request {
                key_id: Some("TKKEY"),
                action: Some(policy::Action::GetObject),
                key,
                source_ip: Some("10.1.2.3".parse().unwrap()),
            });
        }
        let _ = parsed.is_public();
    }
    // The writer's escaping gives text the parser reads back as it was (control characters
    // aside: XML 1.0 cannot carry them, escaped or not).
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.chars().any(|c| c.is_control()) {
            let mut writer = xml::XmlWriter::bare("Root");
            writer.elem("T", text);
            let tree = xml::parse_tree(writer.finish().as_bytes(), "Root").expect("own XML parses");
            assert_eq!(tree.child("T").expect("the element written").text, text);
        }
    }
});
