//! Who may do what: the one place a request's operation is checked against its key, before its
//! handler reads or writes anything.
//!
//! The configured key of a gateway is the administrator: it may do anything, including the admin
//! API. Every other key comes from the key table (`ops::keys`) and may do in a bucket what its
//! grant there allows, or anything if it created the bucket (its owner). Anonymous requests are
//! refused before they get here.

use crate::api::unsupported::Operation;
use crate::api::Gateway;
use crate::s3::error::S3Error;
use crate::s3::sigv4::Credentials;
use node_rpc::record::{BucketRecord, Grant, KeyRecord};

/// The key a request was signed with.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The gateway's configured key.
    Admin,
    Key(KeyRecord),
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
/// read, changing one needs owner. CopyObject and UploadPartCopy also need read in the source
/// bucket, checked by their handler once it knows the source.
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
        | GetBucketVersioning
        | GetBucketLifecycleConfiguration
        | GetBucketEncryption
        | GetObjectLockConfiguration
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
        | GetObjectAttributes => Need::Bucket(Read),
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
        | PutBucketVersioning
        | PutBucketLifecycleConfiguration
        | DeleteBucketLifecycle
        | PutBucketEncryption
        | DeleteBucketEncryption
        | PutObjectLockConfiguration => Need::Bucket(Owner),
    }
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    /// The key id recorded as the owner of a bucket this principal creates.
    pub fn owner_id(&self) -> Option<String> {
        match self {
            Principal::Admin => None,
            Principal::Key(key) => Some(key.id.clone()),
        }
    }

    /// Whether the principal owns the bucket (created it; the administrator owns those it made).
    pub fn owns(&self, bucket: &BucketRecord) -> bool {
        bucket.owner == self.owner_id()
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

    /// `AccessDenied` unless the principal may.
    pub fn require(&self, bucket: &BucketRecord, permission: Permission) -> Result<(), S3Error> {
        if self.may(bucket, permission) {
            Ok(())
        } else {
            Err(S3Error::AccessDenied(
                "the access key has no permission for this in the bucket",
            ))
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

    /// Checks that the principal may ask for the operation on the bucket it names (the router
    /// refuses requests that are no operation, whoever sends them).
    pub(super) async fn authorize(
        &self,
        principal: &Principal,
        operation: Option<Operation>,
        bucket: Option<&str>,
    ) -> Result<(), S3Error> {
        let (Principal::Key(key), Some(operation)) = (principal, operation) else {
            return Ok(());
        };
        match (need(operation), bucket) {
            (Need::Nothing, _) => Ok(()),
            (Need::CreateBucket, _) if key.create_bucket => Ok(()),
            (Need::CreateBucket, _) => Err(S3Error::AccessDenied(
                "the access key may not create buckets",
            )),
            (Need::Bucket(permission), Some(name)) => {
                principal.require(&self.cluster.bucket(name).await?, permission)
            }
            (Need::Bucket(_), None) => Err(S3Error::AccessDenied("no bucket named")),
        }
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
        assert!(matches!(
            reader.require(&granted, Permission::Write),
            Err(S3Error::AccessDenied(_))
        ));

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
