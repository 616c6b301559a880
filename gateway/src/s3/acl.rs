//! S3 access control lists as clients send and read them: the canned ACLs of `x-amz-acl`, the
//! `x-amz-grant-*` headers and the `AccessControlPolicy` document; and what a list of grants
//! allows whom.
//!
//! A grantee is a canonical user id or one of the groups AllUsers (anyone, anonymous included)
//! and AuthenticatedUsers (any valid key). Tessera's canonical user ids are the access key ids
//! of the key table, and `tessera` for a gateway's configured key.

use crate::s3::error::S3Error;
use crate::s3::xml::{parse_tree, Element, XmlWriter};
use http::HeaderMap;
pub use node_rpc::record::{AclGrant, AclPermission, Grantee};

/// The canonical user id of the configured (administrator) key.
pub const ADMIN_ID: &str = "tessera";

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// S3 allows at most this many grants in one ACL.
const MAX_GRANTS: usize = 100;

/// What an ACL is of: only buckets take `x-amz-grant-write`, only objects the `bucket-owner-*`
/// canned ACLs (on a bucket they are its owner's full control, as `private`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Bucket,
    Object,
}

/// The grant headers and the permission each gives.
const GRANT_HEADERS: [(&str, AclPermission); 5] = [
    ("x-amz-grant-read", AclPermission::Read),
    ("x-amz-grant-write", AclPermission::Write),
    ("x-amz-grant-read-acp", AclPermission::ReadAcp),
    ("x-amz-grant-write-acp", AclPermission::WriteAcp),
    ("x-amz-grant-full-control", AclPermission::FullControl),
];

/// Who the ACL of a resource is written for.
pub struct Owners<'a> {
    /// The canonical id of the resource's owner.
    pub owner: &'a str,
    /// The canonical id of the bucket's owner (for an object's `bucket-owner-*` ACLs).
    pub bucket_owner: &'a str,
}

/// The ACL a request's headers ask for (`x-amz-acl` or `x-amz-grant-*`, not both, as S3
/// requires); `None` when they name none.
pub fn from_headers(
    headers: &HeaderMap,
    resource: Resource,
    owners: &Owners,
) -> Result<Option<Vec<AclGrant>>, S3Error> {
    let values = |name: &str| -> Result<Vec<&str>, S3Error> {
        headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| S3Error::InvalidArgument(format!("{name} is not ASCII")))
            })
            .collect()
    };
    let canned_names = values("x-amz-acl")?;
    let mut grants = Vec::new();
    for (header, permission) in GRANT_HEADERS {
        let given = values(header)?;
        if !given.is_empty() && resource == Resource::Object && permission == AclPermission::Write {
            return Err(S3Error::InvalidArgument(format!(
                "{header} applies to buckets only"
            )));
        }
        for value in given {
            for grantee in grantees(value)? {
                grants.push(AclGrant {
                    grantee,
                    permission,
                });
            }
        }
    }
    match canned_names.as_slice() {
        [] if grants.is_empty() => Ok(None),
        [] => {
            limit(&grants)?;
            Ok(Some(grants))
        }
        [name] if grants.is_empty() => canned(name, resource, owners).map(Some),
        [_] => Err(S3Error::InvalidRequest(
            "Specifying both Canned ACLs and Header Grants is not allowed".into(),
        )),
        _ => Err(S3Error::InvalidArgument("x-amz-acl is given twice".into())),
    }
}

/// The grants a canned ACL stands for.
pub fn canned(name: &str, resource: Resource, owners: &Owners) -> Result<Vec<AclGrant>, S3Error> {
    let grant = |grantee: Grantee, permission| AclGrant {
        grantee,
        permission,
    };
    let mut grants = vec![grant(
        Grantee::User(owners.owner.to_string()),
        AclPermission::FullControl,
    )];
    let bucket_owner = (resource == Resource::Object && owners.bucket_owner != owners.owner)
        .then(|| Grantee::User(owners.bucket_owner.to_string()));
    match name {
        "private" => {}
        "public-read" => grants.push(grant(Grantee::AllUsers, AclPermission::Read)),
        "public-read-write" => {
            grants.push(grant(Grantee::AllUsers, AclPermission::Read));
            grants.push(grant(Grantee::AllUsers, AclPermission::Write));
        }
        "authenticated-read" => {
            grants.push(grant(Grantee::AuthenticatedUsers, AclPermission::Read))
        }
        "bucket-owner-read" => grants.extend(bucket_owner.map(|g| grant(g, AclPermission::Read))),
        "bucket-owner-full-control" => {
            grants.extend(bucket_owner.map(|g| grant(g, AclPermission::FullControl)))
        }
        "aws-exec-read" | "log-delivery-write" => {
            return Err(S3Error::NotImplemented(
                "The canned ACLs aws-exec-read and log-delivery-write",
            ))
        }
        _ => {
            return Err(S3Error::InvalidArgument(format!(
                "Invalid canned ACL: {name}"
            )))
        }
    }
    Ok(grants)
}

/// The grantees of one grant header: `id="..."` and `uri="..."`, comma-separated.
fn grantees(value: &str) -> Result<Vec<Grantee>, S3Error> {
    value
        .split(',')
        .map(|item| {
            let (kind, who) = item
                .split_once('=')
                .ok_or_else(|| S3Error::InvalidArgument(format!("Invalid grantee: {item}")))?;
            let who = who.trim().trim_matches('"');
            match kind.trim() {
                "id" if !who.is_empty() => Ok(Grantee::User(who.to_string())),
                "uri" => group(who),
                "emailAddress" => Err(S3Error::NotImplemented("A grant to an e-mail address")),
                _ => Err(S3Error::InvalidArgument(format!("Invalid grantee: {item}"))),
            }
        })
        .collect()
}

fn group(uri: &str) -> Result<Grantee, S3Error> {
    match uri {
        ALL_USERS => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
        LOG_DELIVERY => Err(S3Error::NotImplemented("The LogDelivery group")),
        _ => Err(S3Error::InvalidArgument(format!(
            "Invalid group uri: {uri}"
        ))),
    }
}

fn limit(grants: &[AclGrant]) -> Result<(), S3Error> {
    if grants.len() > MAX_GRANTS {
        return Err(S3Error::MalformedAcl("an ACL holds at most 100 grants"));
    }
    Ok(())
}

/// An `AccessControlPolicy` document: the owner id it names, if any, and its grants.
pub fn parse_policy(body: &[u8]) -> Result<(Option<String>, Vec<AclGrant>), S3Error> {
    let root = parse_tree(body, "AccessControlPolicy")
        .map_err(|_| S3Error::MalformedAcl("not an AccessControlPolicy"))?;
    let owner = root
        .child("Owner")
        .map(|owner| {
            owner
                .text_of("ID")
                .map(str::to_string)
                .ok_or(S3Error::MalformedAcl("Owner without ID"))
        })
        .transpose()?;
    let list = root
        .child("AccessControlList")
        .ok_or(S3Error::MalformedAcl("no AccessControlList"))?;
    let grants = list
        .all("Grant")
        .map(parse_grant)
        .collect::<Result<Vec<_>, _>>()?;
    limit(&grants)?;
    Ok((owner, grants))
}

fn parse_grant(grant: &Element) -> Result<AclGrant, S3Error> {
    let grantee = grant
        .child("Grantee")
        .ok_or(S3Error::MalformedAcl("Grant without Grantee"))?;
    let grantee = if let Some(id) = grantee.text_of("ID") {
        if id.is_empty() {
            return Err(S3Error::MalformedAcl("empty grantee ID"));
        }
        Grantee::User(id.to_string())
    } else if let Some(uri) = grantee.text_of("URI") {
        group(uri)?
    } else if grantee.child("EmailAddress").is_some() {
        return Err(S3Error::NotImplemented("A grant to an e-mail address"));
    } else {
        return Err(S3Error::MalformedAcl("Grantee without ID or URI"));
    };
    let permission = match grant.text_of("Permission") {
        Some("READ") => AclPermission::Read,
        Some("WRITE") => AclPermission::Write,
        Some("READ_ACP") => AclPermission::ReadAcp,
        Some("WRITE_ACP") => AclPermission::WriteAcp,
        Some("FULL_CONTROL") => AclPermission::FullControl,
        _ => return Err(S3Error::MalformedAcl("unknown Permission")),
    };
    Ok(AclGrant {
        grantee,
        permission,
    })
}

/// The `AccessControlPolicy` answer of GetBucketAcl and GetObjectAcl.
pub fn render(owner: &str, grants: &[AclGrant]) -> XmlWriter {
    let mut xml = XmlWriter::new("AccessControlPolicy");
    xml.open("Owner")
        .elem("ID", owner)
        .elem("DisplayName", owner)
        .close();
    xml.open("AccessControlList");
    for grant in grants {
        xml.open("Grant");
        let attributes = |kind| [("xmlns:xsi", XSI), ("xsi:type", kind)];
        match &grant.grantee {
            Grantee::User(id) => xml
                .open_with("Grantee", &attributes("CanonicalUser"))
                .elem("ID", id)
                .elem("DisplayName", id),
            Grantee::AllUsers => xml
                .open_with("Grantee", &attributes("Group"))
                .elem("URI", ALL_USERS),
            Grantee::AuthenticatedUsers => xml
                .open_with("Grantee", &attributes("Group"))
                .elem("URI", AUTHENTICATED_USERS),
        };
        xml.close()
            .elem("Permission", permission_name(grant.permission))
            .close();
    }
    xml.close();
    xml
}

fn permission_name(permission: AclPermission) -> &'static str {
    match permission {
        AclPermission::Read => "READ",
        AclPermission::Write => "WRITE",
        AclPermission::ReadAcp => "READ_ACP",
        AclPermission::WriteAcp => "WRITE_ACP",
        AclPermission::FullControl => "FULL_CONTROL",
    }
}

/// Whether the grants give `wanted` to a requester: `Some(canonical id)` for a signed request,
/// `None` for an anonymous one. FULL_CONTROL gives every permission.
pub fn allows(grants: &[AclGrant], requester: Option<&str>, wanted: AclPermission) -> bool {
    grants.iter().any(|grant| {
        let applies = match &grant.grantee {
            Grantee::AllUsers => true,
            Grantee::AuthenticatedUsers => requester.is_some(),
            Grantee::User(id) => requester == Some(id.as_str()),
        };
        applies && (grant.permission == wanted || grant.permission == AclPermission::FullControl)
    })
}

/// The user ids the grants name, for the caller to check that each exists.
pub fn users(grants: &[AclGrant]) -> impl Iterator<Item = &str> {
    grants.iter().filter_map(|grant| match &grant.grantee {
        Grantee::User(id) => Some(id.as_str()),
        Grantee::AllUsers | Grantee::AuthenticatedUsers => None,
    })
}

/// The grants of the canned `private`: the owner's full control alone.
pub fn private(owner: &str) -> Vec<AclGrant> {
    vec![AclGrant {
        grantee: Grantee::User(owner.to_string()),
        permission: AclPermission::FullControl,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const OWNERS: Owners = Owners {
        owner: "TKWRITER",
        bucket_owner: "TKBUCKET",
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn user(id: &str, permission: AclPermission) -> AclGrant {
        AclGrant {
            grantee: Grantee::User(id.into()),
            permission,
        }
    }

    #[test]
    fn canned_acls_grant_what_s3_documents() {
        let public = canned("public-read", Resource::Object, &OWNERS).unwrap();
        assert!(allows(&public, None, AclPermission::Read));
        assert!(!allows(&public, None, AclPermission::ReadAcp));
        assert!(allows(&public, Some("TKWRITER"), AclPermission::WriteAcp));
        let authenticated = canned("authenticated-read", Resource::Bucket, &OWNERS).unwrap();
        assert!(!allows(&authenticated, None, AclPermission::Read));
        assert!(allows(&authenticated, Some("TKANY"), AclPermission::Read));
        let to_bucket_owner =
            canned("bucket-owner-full-control", Resource::Object, &OWNERS).unwrap();
        assert!(allows(
            &to_bucket_owner,
            Some("TKBUCKET"),
            AclPermission::WriteAcp
        ));
        assert_eq!(
            canned("bucket-owner-read", Resource::Bucket, &OWNERS).unwrap(),
            private("TKWRITER")
        );
        assert!(matches!(
            canned("log-delivery-write", Resource::Bucket, &OWNERS),
            Err(S3Error::NotImplemented(_))
        ));
        assert!(matches!(
            canned("public", Resource::Bucket, &OWNERS),
            Err(S3Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn grant_headers_name_users_and_groups() {
        let grants = from_headers(
            &headers(&[
                (
                    "x-amz-grant-read",
                    r#"id="TKA", uri="http://acs.amazonaws.com/groups/global/AllUsers""#,
                ),
                ("x-amz-grant-full-control", "id=TKB"),
            ]),
            Resource::Bucket,
            &OWNERS,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            grants,
            vec![
                user("TKA", AclPermission::Read),
                AclGrant {
                    grantee: Grantee::AllUsers,
                    permission: AclPermission::Read
                },
                user("TKB", AclPermission::FullControl),
            ]
        );
        assert_eq!(users(&grants).collect::<Vec<_>>(), ["TKA", "TKB"]);
        assert!(from_headers(&headers(&[]), Resource::Bucket, &OWNERS)
            .unwrap()
            .is_none());
        for (pairs, code) in [
            (
                &[("x-amz-acl", "private"), ("x-amz-grant-read", "id=TKA")][..],
                "InvalidRequest",
            ),
            (&[("x-amz-grant-write", "id=TKA")][..], "InvalidArgument"),
            (
                &[("x-amz-grant-read", "emailAddress=a@example.com")][..],
                "NotImplemented",
            ),
            (
                &[(
                    "x-amz-grant-read",
                    "uri=http://acs.amazonaws.com/groups/s3/LogDelivery",
                )][..],
                "NotImplemented",
            ),
            (
                &[("x-amz-grant-read", "uri=http://example.com/")][..],
                "InvalidArgument",
            ),
            (&[("x-amz-grant-read", "TKA")][..], "InvalidArgument"),
            (
                &[("x-amz-acl", "private"), ("x-amz-acl", "public-read")][..],
                "InvalidArgument",
            ),
        ] {
            let err = from_headers(&headers(pairs), Resource::Object, &OWNERS).unwrap_err();
            assert_eq!(err.code(), code, "{pairs:?}");
        }
    }

    #[test]
    fn policies_parse_and_render_back() {
        let grants = vec![
            user("TKA", AclPermission::FullControl),
            AclGrant {
                grantee: Grantee::AuthenticatedUsers,
                permission: AclPermission::ReadAcp,
            },
        ];
        let xml = render("TKA", &grants).finish();
        assert!(xml.contains(r#"xsi:type="CanonicalUser""#), "{xml}");
        let (owner, parsed) = parse_policy(xml.as_bytes()).unwrap();
        assert_eq!(owner.as_deref(), Some("TKA"));
        assert_eq!(parsed, grants);
        for (body, code) in [
            ("<AccessControlPolicy/>", "MalformedACLError"),
            ("<Other/>", "MalformedACLError"),
            (
                "<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>a</ID></Grantee><Permission>ALL</Permission></Grant></AccessControlList></AccessControlPolicy>",
                "MalformedACLError",
            ),
            (
                "<AccessControlPolicy><AccessControlList><Grant><Grantee><EmailAddress>a@b</EmailAddress></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
                "NotImplemented",
            ),
        ] {
            assert_eq!(parse_policy(body.as_bytes()).unwrap_err().code(), code, "{body}");
        }
        let many = format!(
            "<AccessControlPolicy><AccessControlList>{}</AccessControlList></AccessControlPolicy>",
            "<Grant><Grantee><ID>a</ID></Grantee><Permission>READ</Permission></Grant>".repeat(101)
        );
        assert!(parse_policy(many.as_bytes()).is_err());
    }
}
