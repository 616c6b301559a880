//! ACLs and Object Ownership: Get/PutBucketAcl, Get/PutObjectAcl,
//! Get/Put/DeleteBucketOwnershipControls, and the ACL a write asks for with `x-amz-acl` or
//! `x-amz-grant-*` on CreateBucket, PutObject, CopyObject and CreateMultipartUpload.
//!
//! A bucket's ACL lives in its record, an object version's (with its owner) in the version's
//! record, changed as its tags are (`ops::revision`). Who owns what a key writes into another's
//! bucket follows the bucket's Object Ownership: `ObjectWriter` (the default, as in S3 before
//! 2023) the writer, `BucketOwnerPreferred` the bucket's owner when the write gives it full
//! control, `BucketOwnerEnforced` always the bucket's owner, with ACLs disabled.

use crate::api::access::{acls_apply, bucket_grants, object_acl, owner_id, Caller};
use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::ops::lookup::find_version;
use crate::ops::revision::revise_version;
use crate::s3::acl::{self, Owners, Resource, ADMIN_ID};
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, XmlWriter};
use http::{HeaderMap, StatusCode};
use node_rpc::record::{Acl, AclGrant, BucketRecord, ObjectOwnership, ObjectRecord, VersionRef};

/// An `AccessControlPolicy` of 100 grants is well under this.
const ACL_BODY_LIMIT: u64 = 64 * 1024;

pub async fn get_bucket_acl(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    Ok(xml_response(acl::render(
        owner_id(&bucket),
        &bucket_grants(&bucket),
    )))
}

pub async fn put_bucket_acl(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let record = gw.cluster.bucket(bucket).await?;
    let owner = owner_id(&record).to_string();
    let owners = Owners {
        owner: &owner,
        bucket_owner: &owner,
    };
    let grants = requested(gw, req, Resource::Bucket, &owners).await?;
    let private = grants == acl::private(&owner);
    if !private && !acls_apply(&record) {
        return Err(S3Error::AccessControlListNotSupported);
    }
    update_bucket(&gw.cluster, bucket, |b| {
        b.acl = (!private).then_some(grants);
    })
    .await?;
    Ok(empty_response(StatusCode::OK))
}

/// The bucket, the version a request names (`versionId`, else the current one) and its record.
async fn named_version(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: &S3Request,
) -> Result<(BucketRecord, Option<VersionRef>, ObjectRecord), S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let which = req.version_param()?;
    let found = find_version(&gw.cluster, &bucket, key, which, false).await?;
    Ok((bucket, which, found.record))
}

pub async fn get_object_acl(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let (bucket, _, record) = named_version(gw, bucket, key, &req).await?;
    let (owner, grants) = object_acl(&bucket, &record);
    Ok(xml_response(acl::render(&owner, &grants)))
}

pub async fn put_object_acl(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    // The owner the new ACL is written for; the version is then revised on its holders.
    let (bucket, which, record) = named_version(gw, bucket, key, &req).await?;
    let (owner, _) = object_acl(&bucket, &record);
    let bucket_owner = owner_id(&bucket).to_string();
    let owners = Owners {
        owner: &owner,
        bucket_owner: &bucket_owner,
    };
    let grants = requested(gw, req, Resource::Object, &owners).await?;
    let acl = object_acl_record(&bucket, owner, grants)?;
    revise_version(&gw.cluster, &bucket, key, which, |r| {
        r.acl = acl;
        Ok(())
    })
    .await?;
    Ok(empty_response(StatusCode::OK))
}

/// The grants a PutBucketAcl or PutObjectAcl asks for: in its headers or in its body, not both.
async fn requested(
    gw: &Gateway,
    req: S3Request,
    resource: Resource,
    owners: &Owners<'_>,
) -> Result<Vec<AclGrant>, S3Error> {
    let in_headers = acl::from_headers(&req.parts.headers, resource, owners)?;
    let body = req.read_small_body(ACL_BODY_LIMIT).await?;
    let grants = match (in_headers, body.is_empty()) {
        (Some(grants), true) => grants,
        (Some(_), false) => {
            return Err(S3Error::InvalidRequest(
                "An ACL may be given in the headers or in the body, not both".into(),
            ))
        }
        (None, false) => {
            let (owner, grants) = acl::parse_policy(&body)?;
            if owner.is_some_and(|owner| owner != owners.owner) {
                return Err(S3Error::AccessDenied("the ACL names another owner"));
            }
            grants
        }
        (None, true) => return Err(S3Error::MalformedAcl("no ACL in the headers or the body")),
    };
    check_users(gw, &grants).await?;
    Ok(grants)
}

/// `InvalidArgument` for a grant to a user id that is no key's.
async fn check_users(gw: &Gateway, grants: &[AclGrant]) -> Result<(), S3Error> {
    for id in acl::users(grants) {
        if id != ADMIN_ID && gw.cluster.access_key(id).await?.is_none() {
            return Err(S3Error::InvalidArgument(format!("Invalid id: {id}")));
        }
    }
    Ok(())
}

/// What an object version's record keeps of its owner and grants: `None` for the bucket's
/// owner's full control alone, which is also all a bucket without ACLs accepts.
fn object_acl_record(
    bucket: &BucketRecord,
    owner: String,
    grants: Vec<AclGrant>,
) -> Result<Option<Acl>, S3Error> {
    let bucket_owner = owner_id(bucket);
    let default = owner == bucket_owner && grants == acl::private(bucket_owner);
    if !acls_apply(bucket) {
        return if default {
            Ok(None)
        } else {
            Err(S3Error::AccessControlListNotSupported)
        };
    }
    Ok((!default).then_some(Acl { owner, grants }))
}

/// The owner and ACL of an object version a PutObject, CopyObject or CreateMultipartUpload
/// writes, from its headers and the bucket's Object Ownership (`ObjectRecord::acl`).
pub async fn for_new_object(
    gw: &Gateway,
    bucket: &BucketRecord,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Option<Acl>, S3Error> {
    let bucket_owner = owner_id(bucket);
    // An anonymous write (allowed by a policy or ACL) is the bucket owner's.
    let writer = caller.principal.canonical_id().unwrap_or(bucket_owner);
    let canned = headers.get("x-amz-acl").map(|v| v.as_bytes().trim_ascii());
    let owner = match bucket.ownership.unwrap_or(ObjectOwnership::ObjectWriter) {
        ObjectOwnership::BucketOwnerEnforced => bucket_owner,
        ObjectOwnership::BucketOwnerPreferred
            if canned == Some(b"bucket-owner-full-control".as_slice()) =>
        {
            bucket_owner
        }
        _ => writer,
    };
    let owners = Owners {
        owner,
        bucket_owner,
    };
    let grants = match acl::from_headers(headers, Resource::Object, &owners)? {
        Some(grants) => {
            check_users(gw, &grants).await?;
            grants
        }
        None => acl::private(owner),
    };
    object_acl_record(bucket, owner.to_string(), grants)
}

/// The ACL and Object Ownership of a bucket a CreateBucket makes for `owner`, from its
/// `x-amz-acl`, `x-amz-grant-*` and `x-amz-object-ownership` headers.
pub async fn for_new_bucket(
    gw: &Gateway,
    req: &S3Request,
    owner: &str,
) -> Result<(Option<Vec<AclGrant>>, Option<ObjectOwnership>), S3Error> {
    let ownership = req
        .header("x-amz-object-ownership")
        .map(|value| parse_ownership(value.trim()))
        .transpose()?;
    let owners = Owners {
        owner,
        bucket_owner: owner,
    };
    let grants = acl::from_headers(&req.parts.headers, Resource::Bucket, &owners)?
        .filter(|grants| *grants != acl::private(owner));
    if let Some(grants) = &grants {
        if ownership == Some(ObjectOwnership::BucketOwnerEnforced) {
            return Err(S3Error::InvalidBucketAclWithObjectOwnership);
        }
        check_users(gw, grants).await?;
    }
    Ok((grants, ownership))
}

fn parse_ownership(value: &str) -> Result<ObjectOwnership, S3Error> {
    match value {
        "ObjectWriter" => Ok(ObjectOwnership::ObjectWriter),
        "BucketOwnerPreferred" => Ok(ObjectOwnership::BucketOwnerPreferred),
        "BucketOwnerEnforced" => Ok(ObjectOwnership::BucketOwnerEnforced),
        _ => Err(S3Error::InvalidArgument(format!(
            "Invalid Object Ownership: {value}"
        ))),
    }
}

fn ownership_name(ownership: ObjectOwnership) -> &'static str {
    match ownership {
        ObjectOwnership::ObjectWriter => "ObjectWriter",
        ObjectOwnership::BucketOwnerPreferred => "BucketOwnerPreferred",
        ObjectOwnership::BucketOwnerEnforced => "BucketOwnerEnforced",
    }
}

pub async fn get_ownership_controls(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let ownership = bucket.ownership.ok_or(S3Error::OwnershipControlsNotFound)?;
    let mut xml = XmlWriter::new("OwnershipControls");
    xml.open("Rule")
        .elem("ObjectOwnership", ownership_name(ownership))
        .close();
    Ok(xml_response(xml))
}

pub async fn put_ownership_controls(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let ownership = parse_controls(&req.read_small_body(ACL_BODY_LIMIT).await?)?;
    let record = gw.cluster.bucket(bucket).await?;
    if ownership == ObjectOwnership::BucketOwnerEnforced && record.acl.is_some() {
        return Err(S3Error::InvalidBucketAclWithObjectOwnership);
    }
    update_bucket(&gw.cluster, bucket, |b| b.ownership = Some(ownership)).await?;
    Ok(empty_response(StatusCode::OK))
}

/// An `<OwnershipControls>` of exactly one rule.
fn parse_controls(body: &[u8]) -> Result<ObjectOwnership, S3Error> {
    let root = parse_tree(body, "OwnershipControls")?;
    match root.children.as_slice() {
        [rule] if rule.name == "Rule" && rule.children.len() == 1 => rule
            .text_of("ObjectOwnership")
            .ok_or(S3Error::MalformedXml)
            .and_then(|value| parse_ownership(value).map_err(|_| S3Error::MalformedXml)),
        _ => Err(S3Error::MalformedXml),
    }
}

pub async fn delete_ownership_controls(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.ownership = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_rpc::record::{AclPermission, Grantee};

    #[test]
    fn ownership_controls_parse() {
        let body = |inner: &str| {
            format!("<OwnershipControls xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{inner}</OwnershipControls>")
        };
        assert_eq!(
            parse_controls(
                body("<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>")
                    .as_bytes()
            )
            .unwrap(),
            ObjectOwnership::BucketOwnerEnforced
        );
        for inner in [
            "",
            "<Rule><ObjectOwnership>Nobody</ObjectOwnership></Rule>",
            "<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>",
            "<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership><Other/></Rule>",
        ] {
            assert!(parse_controls(body(inner).as_bytes()).is_err(), "{inner}");
        }
    }

    #[test]
    fn object_records_keep_only_what_differs_from_the_default() {
        let mut bucket = BucketRecord {
            owner: Some("TKOWNER".into()),
            ..BucketRecord::default()
        };
        assert_eq!(
            object_acl_record(&bucket, "TKOWNER".into(), acl::private("TKOWNER")).unwrap(),
            None
        );
        let writer = object_acl_record(&bucket, "TKWRITER".into(), acl::private("TKWRITER"))
            .unwrap()
            .unwrap();
        assert_eq!(writer.owner, "TKWRITER");
        let mut public = acl::private("TKOWNER");
        public.push(AclGrant {
            grantee: Grantee::AllUsers,
            permission: AclPermission::Read,
        });
        assert!(object_acl_record(&bucket, "TKOWNER".into(), public.clone())
            .unwrap()
            .is_some());
        bucket.ownership = Some(ObjectOwnership::BucketOwnerEnforced);
        assert!(matches!(
            object_acl_record(&bucket, "TKOWNER".into(), public),
            Err(S3Error::AccessControlListNotSupported)
        ));
    }
}
