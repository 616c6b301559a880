//! Who may do what: the one place a request's operation is checked against its caller, before
//! its handler reads or writes anything.
//!
//! The configured key of a gateway is the administrator: it may do anything, including the admin
//! API. Every other key comes from the key table (`ops::keys`) and may do in a bucket what its
//! grant there allows, or anything if it created the bucket (its owner). A bucket's policy
//! (`s3::policy`) comes first: an explicit Deny refuses whatever the key's grant, an Allow
//! allows whatever it lacks. ACLs (`s3::acl`), the bucket's and then the object's, only ever
//! allow; with the policy they are how an anonymous request is let in. A bucket whose Object
//! Ownership is `BucketOwnerEnforced` has its ACLs disabled.

use crate::api::unsupported::Operation;
use crate::api::{Gateway, S3Request};
use crate::ops::error::OpError;
use crate::ops::lookup::find_version;
use crate::s3::acl::{self, ADMIN_ID};
use crate::s3::auth::Credentials;
use crate::s3::error::S3Error;
use crate::s3::policy::{Action, Decision, Policy, Request};
use node_rpc::record::{
    AclGrant, AclPermission, BucketRecord, Grant, KeyRecord, ObjectOwnership, ObjectRecord,
};
use std::borrow::Cow;
use std::net::IpAddr;

/// The key a request was signed with.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The gateway's configured key.
    Admin,
    Key(KeyRecord),
    /// No signature at all.
    Anonymous,
    /// The replication of a peer region, which may only apply replicas (`api::replica`) and
    /// read objects (resync asks for versions; reads fall back, `api::fallback`).
    Replicator,
}

/// Who sends a request: its key and the address it comes from (for policies' `aws:SourceIp`).
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub ip: Option<IpAddr>,
}

/// What a key may be granted in a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// GET, HEAD and listings, and reading the bucket's settings.
    Read,
    /// Object writes and deletes, multipart uploads, object tags, retention and legal holds.
    Write,
    /// Changing the bucket's settings, deleting it, and bypassing GOVERNANCE retention.
    Owner,
}

/// What an operation needs of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Permission in the bucket the request names.
    Bucket(Permission),
    /// The right to create buckets.
    CreateBucket,
    /// Nothing: ListBuckets, which shows each key the buckets it may see.
    Nothing,
}

/// The table of `docs/architecture.md` ("Access keys and permissions"). Reading a setting needs
/// read, changing one needs owner; the policy and ACLs, which say who may do what, only the
/// owner reads. CopyObject and UploadPartCopy also need read in the source bucket, checked by
/// their handler once it knows the source.
pub fn need(operation: Operation) -> Need {
    use Operation::*;
    use Permission::*;
    match operation {
        ListBuckets => Need::Nothing,
        CreateBucket => Need::CreateBucket,
        HeadBucket
        | GetBucketLocation
        | GetBucketTagging
        | GetBucketCors
        | GetBucketReplication
        | GetBucketVersioning
        | GetBucketLifecycleConfiguration
        | GetBucketEncryption
        | GetObjectLockConfiguration
        | GetBucketNotificationConfiguration
        | ListObjects
        | ListObjectsV2
        | ListObjectVersions
        | ListMultipartUploads
        | GetObject
        | HeadObject
        | GetObjectTagging
        | ListParts
        | GetObjectRetention
        | GetObjectLegalHold
        | GetObjectAttributes
        | GetBucketOwnershipControls => Need::Bucket(Read),
        DeleteObjects
        | PutObject
        | CopyObject
        | DeleteObject
        | PutObjectTagging
        | DeleteObjectTagging
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload
        | AbortMultipartUpload
        | PutObjectRetention
        | PutObjectLegalHold => Need::Bucket(Write),
        DeleteBucket
        | PutBucketTagging
        | DeleteBucketTagging
        | PutBucketCors
        | DeleteBucketCors
        | PutBucketReplication
        | DeleteBucketReplication
        | PutBucketVersioning
        | PutBucketLifecycleConfiguration
        | DeleteBucketLifecycle
        | PutBucketEncryption
        | DeleteBucketEncryption
        | PutObjectLockConfiguration
        | PutBucketPolicy
        | GetBucketPolicy
        | DeleteBucketPolicy
        | GetBucketPolicyStatus
        | GetBucketAcl
        | PutBucketAcl
        | GetObjectAcl
        | PutObjectAcl
        | PutBucketOwnershipControls
        | DeleteBucketOwnershipControls => Need::Bucket(Owner),
    }
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    /// The key id recorded as the owner of a bucket this principal creates.
    pub fn owner_id(&self) -> Option<String> {
        match self {
            Principal::Admin | Principal::Anonymous | Principal::Replicator => None,
            Principal::Key(key) => Some(key.id.clone()),
        }
    }

    /// The canonical user id ACLs name the principal by; `None` for anonymous requests.
    pub fn canonical_id(&self) -> Option<&str> {
        match self {
            Principal::Admin => Some(ADMIN_ID),
            Principal::Key(key) => Some(&key.id),
            Principal::Anonymous | Principal::Replicator => None,
        }
    }

    /// The access key id a policy's `Principal` names; `None` for anonymous requests (and the
    /// administrator, whom policies do not bind).
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Principal::Key(key) => Some(&key.id),
            Principal::Admin | Principal::Anonymous | Principal::Replicator => None,
        }
    }

    /// Whether the principal owns the bucket (created it; the administrator owns those it made).
    pub fn owns(&self, bucket: &BucketRecord) -> bool {
        match self {
            Principal::Admin => bucket.owner.is_none(),
            Principal::Key(key) => bucket.owner.as_deref() == Some(key.id.as_str()),
            Principal::Anonymous | Principal::Replicator => false,
        }
    }

    /// What the principal may do in the bucket.
    pub fn grant(&self, bucket: &BucketRecord) -> Grant {
        let all = Grant {
            read: true,
            write: true,
            owner: true,
        };
        match self {
            Principal::Admin => all,
            Principal::Key(_) if self.owns(bucket) => all,
            Principal::Key(key) => key
                .buckets
                .get(&hex::encode(bucket.id))
                .copied()
                .unwrap_or_default(),
            Principal::Anonymous | Principal::Replicator => Grant::default(),
        }
    }

    pub fn may(&self, bucket: &BucketRecord, permission: Permission) -> bool {
        let grant = self.grant(bucket);
        match permission {
            Permission::Read => grant.read,
            Permission::Write => grant.write,
            Permission::Owner => grant.owner,
        }
    }

    /// Whether ListBuckets shows the bucket to this principal.
    pub fn sees(&self, bucket: &BucketRecord) -> bool {
        !self.grant(bucket).is_empty()
    }
}

impl Gateway {
    /// The credentials to check a request's signature against, and whose they are: the
    /// configured key, or a live key of the key table (`InvalidAccessKeyId` for any other id).
    /// Without a readable key id, the configured key's checks say what is wrong.
    pub(super) async fn credentials_for(
        &self,
        key_id: Option<&str>,
    ) -> Result<(Credentials, Principal), S3Error> {
        let admin = || (self.credentials.clone(), Principal::Admin);
        let Some(id) = key_id.filter(|id| *id != self.credentials.access_key_id) else {
            return Ok(admin());
        };
        if let Some(region) = &self.region {
            if region.peer_signing_as(id).is_some() {
                let credentials = Credentials {
                    access_key_id: id.to_string(),
                    secret_access_key: region.replication_secret_key(),
                    region: self.config.region.clone(),
                };
                return Ok((credentials, Principal::Replicator));
            }
        }
        let key = self
            .cluster
            .access_key(id)
            .await?
            .ok_or(S3Error::InvalidAccessKeyId)?;
        let secret = self
            .cluster
            .secrets
            .open(&key)
            .ok_or(S3Error::InvalidAccessKeyId)?;
        let credentials = Credentials {
            access_key_id: key.id.clone(),
            secret_access_key: secret,
            region: self.config.region.clone(),
        };
        Ok((credentials, Principal::Key(key)))
    }

    /// Checks that the request's caller may ask for the operation on the bucket and key it
    /// names (the router refuses requests that are no operation, whoever sends them), and that
    /// the bucket has the owner `x-amz-expected-bucket-owner` names, if any.
    pub(super) async fn authorize(
        &self,
        req: &S3Request,
        operation: Option<Operation>,
        bucket: Option<&str>,
        key: Option<&str>,
    ) -> Result<(), S3Error> {
        let caller = &req.caller;
        let anonymous = matches!(caller.principal, Principal::Anonymous);
        let refused = || {
            Err(S3Error::AccessDenied(
                "anonymous requests need a bucket policy or ACL that allows them",
            ))
        };
        let replica = req.header(crate::ops::replica::VERSION_HEADER).is_some();
        use Operation::*;
        match (&caller.principal, replica, operation) {
            // A version made of parts travels as a multipart upload, which its Complete applies
            // as the replica (`background::peer`).
            (
                Principal::Replicator,
                true,
                Some(PutObject | DeleteObject | CompleteMultipartUpload),
            )
            | (
                Principal::Replicator,
                false,
                Some(
                    HeadObject
                    | GetObject
                    | CreateMultipartUpload
                    | UploadPart
                    | AbortMultipartUpload,
                ),
            ) => return Ok(()),
            (Principal::Replicator, ..) => {
                return Err(S3Error::AccessDenied(
                    "a peer region's replication key only applies replicas and reads objects",
                ))
            }
            (_, true, _) => {
                return Err(S3Error::AccessDenied(
                    "only a peer region's replication applies replicas",
                ))
            }
            _ => {}
        }
        let expected_owner = req.header("x-amz-expected-bucket-owner");
        let Some(operation) = operation else {
            return if anonymous { refused() } else { Ok(()) };
        };
        if caller.principal.is_admin() && expected_owner.is_none() {
            return Ok(());
        }
        let name = match (need(operation), bucket) {
            (Need::Nothing, _) if anonymous => return refused(),
            (Need::Nothing, _) => return Ok(()),
            (Need::CreateBucket, _) => {
                return match &caller.principal {
                    Principal::Admin => Ok(()),
                    Principal::Key(key) if key.create_bucket => Ok(()),
                    _ => Err(S3Error::AccessDenied(
                        "the access key may not create buckets",
                    )),
                }
            }
            (Need::Bucket(_), Some(name)) => name,
            (Need::Bucket(_), None) => return Err(S3Error::AccessDenied("no bucket named")),
        };
        let bucket = self.cluster.bucket(name).await?;
        if expected_owner.is_some_and(|expected| expected != owner_id(&bucket)) {
            return Err(S3Error::AccessDenied("the bucket has another owner"));
        }
        match caller.verdict(&bucket, operation, key)? {
            Verdict::Allowed => Ok(()),
            Verdict::Denied(e) => Err(e),
            Verdict::ObjectAcl(permission) => {
                let key = key.ok_or(S3Error::AccessDenied("no key named"))?;
                let which = req.version_param()?;
                let found = find_version(&self.cluster, &bucket, key, which, false)
                    .await
                    .map_err(hide_absence)?;
                caller.check_object(&bucket, &found.record, permission)
            }
        }
    }
}

/// A lookup's failure, as told to a caller that may only learn of an object through its ACL:
/// whether the object exists is not for it to know.
pub fn hide_absence(e: OpError) -> S3Error {
    match e {
        OpError::NoSuchKey
        | OpError::NoSuchVersion
        | OpError::DeleteMarker { .. }
        | OpError::DeleteMarkerVersion { .. } => NO_PERMISSION,
        other => other.into(),
    }
}

const NO_PERMISSION: S3Error =
    S3Error::AccessDenied("the access key has no permission for this in the bucket");

/// The canonical id of a bucket's owner.
pub fn owner_id(bucket: &BucketRecord) -> &str {
    bucket.owner.as_deref().unwrap_or(ADMIN_ID)
}

/// Whether the bucket's ACLs and its objects' count (Object Ownership not `BucketOwnerEnforced`).
pub fn acls_apply(bucket: &BucketRecord) -> bool {
    bucket.ownership != Some(ObjectOwnership::BucketOwnerEnforced)
}

/// The grants of the bucket's ACL in force (borrowed from its record where it has some).
pub fn bucket_grants(bucket: &BucketRecord) -> Cow<'_, [AclGrant]> {
    match &bucket.acl {
        Some(grants) if acls_apply(bucket) => Cow::Borrowed(grants),
        _ => Cow::Owned(acl::private(owner_id(bucket))),
    }
}

/// The owner of an object version and the grants of its ACL in force.
pub fn object_acl(bucket: &BucketRecord, record: &ObjectRecord) -> (String, Vec<AclGrant>) {
    match &record.acl {
        Some(acl) if acls_apply(bucket) => (acl.owner.clone(), acl.grants.clone()),
        _ => (owner_id(bucket).to_string(), acl::private(owner_id(bucket))),
    }
}

/// The permission a bucket's ACL must give for an operation, if one can.
fn bucket_acl_permission(operation: Operation) -> Option<AclPermission> {
    use Operation::*;
    match operation {
        ListObjects | ListObjectsV2 | ListObjectVersions | ListMultipartUploads | HeadBucket => {
            Some(AclPermission::Read)
        }
        PutObject
        | CopyObject
        | DeleteObject
        | DeleteObjects
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload
        | AbortMultipartUpload => Some(AclPermission::Write),
        GetBucketAcl => Some(AclPermission::ReadAcp),
        PutBucketAcl => Some(AclPermission::WriteAcp),
        _ => None,
    }
}

/// The permission an object's ACL must give for an operation on it, if one can.
pub fn object_acl_permission(operation: Operation) -> Option<AclPermission> {
    use Operation::*;
    match operation {
        GetObject | HeadObject | GetObjectAttributes => Some(AclPermission::Read),
        GetObjectAcl => Some(AclPermission::ReadAcp),
        PutObjectAcl => Some(AclPermission::WriteAcp),
        _ => None,
    }
}

/// The policy action an operation is (`None`: only `s3:*` names it).
pub fn action(operation: Operation) -> Option<Action> {
    use Operation::*;
    match operation {
        GetObject | HeadObject | GetObjectAttributes => Some(Action::GetObject),
        PutObject
        | CopyObject
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload => Some(Action::PutObject),
        DeleteObject | DeleteObjects => Some(Action::DeleteObject),
        ListObjects | ListObjectsV2 | HeadBucket => Some(Action::ListBucket),
        _ => None,
    }
}

/// What the caller's grants, the bucket's policy and the bucket's ACL say of a request.
#[derive(Debug)]
pub enum Verdict {
    Allowed,
    Denied(S3Error),
    /// Nothing else allows it, but the ACL of the object version it is on may, with this.
    ObjectAcl(AclPermission),
}

impl Caller {
    /// `AccessDenied` unless the caller may do `operation` on `key` of `bucket` (the bucket
    /// itself when `None`) whatever the object's ACL says. DeleteObjects names no key: it is let
    /// through when the caller may write, or when the policy may allow it some deletes, and each
    /// key is then checked as a DeleteObject.
    pub fn check(
        &self,
        bucket: &BucketRecord,
        operation: Operation,
        key: Option<&str>,
    ) -> Result<(), S3Error> {
        match self.verdict(bucket, operation, key)? {
            Verdict::Allowed => Ok(()),
            Verdict::Denied(e) => Err(e),
            Verdict::ObjectAcl(_) => Err(NO_PERMISSION),
        }
    }

    /// `AccessDenied` unless the object version's ACL gives the caller `permission` (its owner
    /// may always read and change the ACL).
    pub fn check_object(
        &self,
        bucket: &BucketRecord,
        record: &ObjectRecord,
        permission: AclPermission,
    ) -> Result<(), S3Error> {
        let (owner, grants) = object_acl(bucket, record);
        let id = self.principal.canonical_id();
        let owner_may = id == Some(owner.as_str())
            && matches!(permission, AclPermission::ReadAcp | AclPermission::WriteAcp);
        if owner_may || acl::allows(&grants, id, permission) {
            Ok(())
        } else {
            Err(NO_PERMISSION)
        }
    }

    /// The verdict on `operation` on `key` of `bucket`, before the object's ACL.
    pub fn verdict(
        &self,
        bucket: &BucketRecord,
        operation: Operation,
        key: Option<&str>,
    ) -> Result<Verdict, S3Error> {
        if self.principal.is_admin() {
            return Ok(Verdict::Allowed);
        }
        let id = self.principal.canonical_id();
        let by_acl = acls_apply(bucket)
            && bucket_acl_permission(operation)
                .is_some_and(|permission| acl::allows(&bucket_grants(bucket), id, permission));
        let permitted = by_acl
            || match need(operation) {
                Need::Bucket(permission) => self.principal.may(bucket, permission),
                Need::CreateBucket | Need::Nothing => false,
            };
        let policy = match &bucket.policy {
            // Checked when it was stored; one that no longer parses allows nothing.
            Some(text) => Some(
                Policy::parse(&bucket.name, text.as_bytes())
                    .map_err(|_| S3Error::AccessDenied("the bucket's policy cannot be read"))?,
            ),
            None => None,
        };
        let key_id = self.principal.key_id();
        let decision = match (&policy, operation) {
            (Some(policy), Operation::DeleteObjects) => {
                if policy.may_allow(key_id, Action::DeleteObject, self.ip) {
                    Decision::Allow
                } else {
                    Decision::Silent
                }
            }
            (Some(policy), _) => policy.evaluate(&Request {
                key_id,
                action: action(operation),
                key,
                source_ip: self.ip,
            }),
            (None, _) => Decision::Silent,
        };
        Ok(match decision {
            Decision::Deny => {
                Verdict::Denied(S3Error::AccessDenied("the bucket's policy denies this"))
            }
            Decision::Allow => Verdict::Allowed,
            Decision::Silent if permitted => Verdict::Allowed,
            Decision::Silent => match object_acl_permission(operation) {
                Some(permission) if key.is_some() && acls_apply(bucket) => {
                    Verdict::ObjectAcl(permission)
                }
                _ => Verdict::Denied(NO_PERMISSION),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, grants: &[([u8; 16], Grant)]) -> Principal {
        Principal::Key(KeyRecord {
            id: id.into(),
            buckets: grants
                .iter()
                .map(|(bucket, grant)| (hex::encode(bucket), *grant))
                .collect(),
            ..KeyRecord::default()
        })
    }

    fn bucket(id: [u8; 16], owner: Option<&str>) -> BucketRecord {
        BucketRecord {
            name: "b".into(),
            id,
            owner: owner.map(str::to_string),
            ..BucketRecord::default()
        }
    }

    #[test]
    fn grants_are_per_bucket_and_owners_may_do_anything() {
        let read_only = Grant {
            read: true,
            ..Grant::default()
        };
        let reader = key("TKREADER", &[([1; 16], read_only)]);
        let granted = bucket([1; 16], None);
        let other = bucket([2; 16], None);
        assert!(reader.may(&granted, Permission::Read));
        assert!(!reader.may(&granted, Permission::Write));
        assert!(!reader.may(&granted, Permission::Owner));
        assert!(!reader.may(&other, Permission::Read));
        assert!(reader.sees(&granted) && !reader.sees(&other));
        let caller = |principal: &Principal| Caller {
            principal: principal.clone(),
            ip: None,
        };
        assert!(matches!(
            caller(&reader).check(&granted, Operation::PutObject, Some("k")),
            Err(S3Error::AccessDenied(_))
        ));
        assert!(caller(&reader)
            .check(&granted, Operation::GetObject, Some("k"))
            .is_ok());

        let owned = bucket([3; 16], Some("TKOWNER"));
        let owner = key("TKOWNER", &[]);
        for permission in [Permission::Read, Permission::Write, Permission::Owner] {
            assert!(owner.may(&owned, permission));
            assert!(Principal::Admin.may(&other, permission));
            assert!(!reader.may(&owned, permission));
        }
        assert!(!owner.owns(&granted), "the administrator's buckets");
        assert!(Principal::Admin.owns(&granted) && !Principal::Admin.owns(&owned));
    }

    #[test]
    fn a_bucket_created_again_is_not_reached_by_old_grants() {
        let full = Grant {
            read: true,
            write: true,
            owner: true,
        };
        let principal = key("TKA", &[([7; 16], full)]);
        assert!(principal.may(&bucket([7; 16], None), Permission::Owner));
        assert!(!principal.may(&bucket([8; 16], None), Permission::Read));
    }

    #[test]
    fn a_policy_allows_what_grants_lack_and_denies_what_they_give() {
        let mut site = bucket([4; 16], None);
        site.name = "site".into();
        site.policy = Some(
            r#"{"Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                 "Resource": "arn:aws:s3:::site/public/*"},
                {"Effect": "Deny", "Principal": {"AWS": "TKWRITER"}, "Action": "s3:DeleteObject",
                 "Resource": "arn:aws:s3:::site/keep/*"}
            ]}"#
            .into(),
        );
        let full = Grant {
            read: true,
            write: true,
            owner: false,
        };
        let as_caller = |principal: Principal| Caller {
            principal,
            ip: Some("127.0.0.1".parse().unwrap()),
        };
        let anonymous = as_caller(Principal::Anonymous);
        assert!(anonymous
            .check(&site, Operation::GetObject, Some("public/app.js"))
            .is_ok());
        assert!(anonymous
            .check(&site, Operation::HeadObject, Some("public/app.js"))
            .is_ok());
        for (operation, key) in [
            (Operation::GetObject, Some("private/x")),
            (Operation::PutObject, Some("public/x")),
            (Operation::ListObjectsV2, None),
            (Operation::DeleteBucket, None),
        ] {
            assert!(
                anonymous.check(&site, operation, key).is_err(),
                "{operation:?}"
            );
        }
        let writer = as_caller(key("TKWRITER", &[([4; 16], full)]));
        assert!(writer
            .check(&site, Operation::DeleteObject, Some("tmp/x"))
            .is_ok());
        assert!(writer
            .check(&site, Operation::DeleteObject, Some("keep/x"))
            .is_err());
        assert!(as_caller(Principal::Admin)
            .check(&site, Operation::DeleteObject, Some("keep/x"))
            .is_ok());
        // Anonymous owns nothing, not even the administrator's buckets.
        assert!(!Principal::Anonymous.owns(&site) && Principal::Admin.owns(&site));
    }

    #[test]
    fn acls_add_to_grants_and_are_off_when_the_owner_enforces() {
        use node_rpc::record::{Acl, Grantee};
        let public_read = |owner: &str| {
            let mut grants = acl::private(owner);
            grants.push(AclGrant {
                grantee: Grantee::AllUsers,
                permission: AclPermission::Read,
            });
            grants
        };
        let mut listed = bucket([5; 16], Some("TKOWNER"));
        listed.acl = Some(public_read("TKOWNER"));
        let anonymous = Caller {
            principal: Principal::Anonymous,
            ip: None,
        };
        let stranger = Caller {
            principal: key("TKSTRANGER", &[]),
            ip: None,
        };
        for caller in [&anonymous, &stranger] {
            assert!(caller
                .check(&listed, Operation::ListObjectsV2, None)
                .is_ok());
            assert!(caller
                .check(&listed, Operation::PutObject, Some("k"))
                .is_err());
            assert!(caller
                .check(&listed, Operation::GetBucketAcl, None)
                .is_err());
        }
        // An object read is left to the object's ACL; a write or a setting is not.
        assert!(matches!(
            anonymous.verdict(&listed, Operation::GetObject, Some("k")),
            Ok(Verdict::ObjectAcl(AclPermission::Read))
        ));
        assert!(matches!(
            anonymous.verdict(&listed, Operation::GetObjectTagging, Some("k")),
            Ok(Verdict::Denied(_))
        ));
        let mut record = ObjectRecord::tombstone(node_rpc::record::Version::now(), false);
        assert!(anonymous
            .check_object(&listed, &record, AclPermission::Read)
            .is_err());
        record.acl = Some(Acl {
            owner: "TKSTRANGER".into(),
            grants: public_read("TKSTRANGER"),
        });
        assert!(anonymous
            .check_object(&listed, &record, AclPermission::Read)
            .is_ok());
        assert!(anonymous
            .check_object(&listed, &record, AclPermission::ReadAcp)
            .is_err());
        // Its owner may always read and change an object's ACL.
        record.acl.as_mut().unwrap().grants.clear();
        assert!(stranger
            .check_object(&listed, &record, AclPermission::WriteAcp)
            .is_ok());
        assert!(stranger
            .check_object(&listed, &record, AclPermission::Read)
            .is_err());

        listed.ownership = Some(ObjectOwnership::BucketOwnerEnforced);
        assert!(anonymous
            .check(&listed, Operation::ListObjectsV2, None)
            .is_err());
        assert!(matches!(
            anonymous.verdict(&listed, Operation::GetObject, Some("k")),
            Ok(Verdict::Denied(_))
        ));
        assert_eq!(object_acl(&listed, &record).0, "TKOWNER");
    }

    #[test]
    fn settings_are_read_with_read_and_changed_with_owner() {
        use Operation::*;
        assert_eq!(need(GetBucketVersioning), Need::Bucket(Permission::Read));
        assert_eq!(need(PutBucketVersioning), Need::Bucket(Permission::Owner));
        assert_eq!(need(DeleteBucket), Need::Bucket(Permission::Owner));
        assert_eq!(need(PutObject), Need::Bucket(Permission::Write));
        assert_eq!(need(DeleteObjects), Need::Bucket(Permission::Write));
        assert_eq!(need(ListObjectsV2), Need::Bucket(Permission::Read));
        assert_eq!(need(CreateBucket), Need::CreateBucket);
        assert_eq!(need(ListBuckets), Need::Nothing);
    }
}
