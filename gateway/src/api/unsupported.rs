//! The request headers and query parameters that AWS documents for the S3 operations Tessera
//! serves but that Tessera does not implement in full, and what to answer to each.
//!
//! A request is never accepted while part of what it asks for is ignored: a backup tool told
//! that its object lock holds, or a client told that its object is encrypted, would be misled.
//! So every such header is refused (501 `NotImplemented`, or the error AWS itself gives), unless
//! its value asks for exactly what Tessera does anyway (`x-amz-acl: private`,
//! `x-amz-storage-class: STANDARD`, ...). The table below follows the request syntax of each
//! operation in AWS's S3 API reference (botocore's `s3/2006-03-01/service-2.json`, the input
//! members with `location: header` or `querystring`); members it does not name are implemented
//! by the handlers.

use crate::s3::error::S3Error;
use crate::s3::http::{header, Query};
use http::request::Parts;
use http::Method;

/// Declares `Operation` with its list and its names, so that the three cannot drift apart.
macro_rules! operations {
    ($($name:ident,)*) => {
        /// The S3 operations the router serves (the admin API under `/_tessera/` is not S3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Operation {
            $($name,)*
        }

        impl Operation {
            /// Every operation, in declaration order (`op as usize` indexes it).
            pub const ALL: &'static [Operation] = &[$(Operation::$name,)*];

            /// The operation's name in the S3 API reference.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$name => stringify!($name),)*
                }
            }
        }
    };
}

operations! {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    PutBucketTagging,
    GetBucketTagging,
    DeleteBucketTagging,
    PutBucketCors,
    GetBucketCors,
    DeleteBucketCors,
    PutBucketReplication,
    GetBucketReplication,
    DeleteBucketReplication,
    PutBucketVersioning,
    GetBucketVersioning,
    PutBucketLifecycleConfiguration,
    GetBucketLifecycleConfiguration,
    DeleteBucketLifecycle,
    PutBucketEncryption,
    GetBucketEncryption,
    DeleteBucketEncryption,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    PutObject,
    GetObject,
    HeadObject,
    CopyObject,
    DeleteObject,
    PutObjectTagging,
    GetObjectTagging,
    DeleteObjectTagging,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    PutObjectLockConfiguration,
    GetObjectLockConfiguration,
    PutObjectRetention,
    GetObjectRetention,
    PutObjectLegalHold,
    GetObjectLegalHold,
    GetObjectAttributes,
    PutBucketPolicy,
    GetBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetBucketNotificationConfiguration,
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
    GetBucketOwnershipControls,
    PutBucketOwnershipControls,
    DeleteBucketOwnershipControls,
}

use Operation::*;

impl Operation {
    /// The operation a request asks for, decided as the router decides it; `None` for requests
    /// the router refuses whatever their headers.
    pub fn of(parts: &Parts, query: &Query, has_bucket: bool, has_key: bool) -> Option<Operation> {
        let q = |name| query.has(name);
        let method = &parts.method;
        let plain = query.0.is_empty();
        let op = match (has_bucket, has_key) {
            (false, _) if *method == Method::GET => ListBuckets,
            (false, _) => return None,
            (true, false) => match *method {
                Method::PUT if plain => CreateBucket,
                Method::HEAD => HeadBucket,
                Method::DELETE if plain => DeleteBucket,
                Method::PUT if q("tagging") => PutBucketTagging,
                Method::GET if q("tagging") => GetBucketTagging,
                Method::DELETE if q("tagging") => DeleteBucketTagging,
                Method::PUT if q("cors") => PutBucketCors,
                Method::GET if q("cors") => GetBucketCors,
                Method::DELETE if q("cors") => DeleteBucketCors,
                Method::PUT if q("replication") => PutBucketReplication,
                Method::GET if q("replication") => GetBucketReplication,
                Method::DELETE if q("replication") => DeleteBucketReplication,
                Method::POST if q("delete") => DeleteObjects,
                Method::GET if q("location") => GetBucketLocation,
                Method::GET if q("versioning") => GetBucketVersioning,
                Method::PUT if q("versioning") => PutBucketVersioning,
                Method::PUT if q("lifecycle") => PutBucketLifecycleConfiguration,
                Method::GET if q("lifecycle") => GetBucketLifecycleConfiguration,
                Method::DELETE if q("lifecycle") => DeleteBucketLifecycle,
                Method::PUT if q("encryption") => PutBucketEncryption,
                Method::GET if q("encryption") => GetBucketEncryption,
                Method::DELETE if q("encryption") => DeleteBucketEncryption,
                Method::PUT if q("policy") => PutBucketPolicy,
                Method::GET if q("policy") => GetBucketPolicy,
                Method::DELETE if q("policy") => DeleteBucketPolicy,
                Method::GET if q("policyStatus") => GetBucketPolicyStatus,
                Method::GET if q("notification") => GetBucketNotificationConfiguration,
                Method::GET if q("acl") => GetBucketAcl,
                Method::PUT if q("acl") => PutBucketAcl,
                Method::GET if q("ownershipControls") => GetBucketOwnershipControls,
                Method::PUT if q("ownershipControls") => PutBucketOwnershipControls,
                Method::DELETE if q("ownershipControls") => DeleteBucketOwnershipControls,
                Method::PUT if q("object-lock") => PutObjectLockConfiguration,
                Method::GET if q("object-lock") => GetObjectLockConfiguration,
                Method::GET if q("versions") => ListObjectVersions,
                Method::GET if q("uploads") => ListMultipartUploads,
                Method::GET if query.get("list-type") == Some("2") => ListObjectsV2,
                Method::GET => ListObjects,
                _ => return None,
            },
            (true, true) => {
                let upload = q("uploadId");
                let copy = header(parts, "x-amz-copy-source").is_some();
                match *method {
                    Method::PUT if upload && q("partNumber") && copy => UploadPartCopy,
                    Method::PUT if upload && q("partNumber") => UploadPart,
                    Method::PUT if q("tagging") => PutObjectTagging,
                    Method::GET if q("tagging") => GetObjectTagging,
                    Method::DELETE if q("tagging") => DeleteObjectTagging,
                    Method::PUT if q("retention") => PutObjectRetention,
                    Method::GET if q("retention") => GetObjectRetention,
                    Method::PUT if q("legal-hold") => PutObjectLegalHold,
                    Method::GET if q("legal-hold") => GetObjectLegalHold,
                    Method::GET if q("attributes") => GetObjectAttributes,
                    Method::GET if q("acl") => GetObjectAcl,
                    Method::PUT if q("acl") => PutObjectAcl,
                    Method::PUT if copy => CopyObject,
                    Method::PUT => PutObject,
                    Method::GET if upload => ListParts,
                    Method::GET => GetObject,
                    Method::HEAD => HeadObject,
                    Method::DELETE if upload => AbortMultipartUpload,
                    Method::DELETE => DeleteObject,
                    Method::POST if q("uploads") => CreateMultipartUpload,
                    Method::POST if upload => CompleteMultipartUpload,
                    _ => return None,
                }
            }
        };
        Some(op)
    }
}

/// Where a request carries a rule's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Header,
    Query,
}

/// Which values of a header or parameter Tessera accepts.
#[derive(Clone, Copy, Debug)]
enum Accepted {
    /// None: the feature behind it is not implemented.
    Nothing,
    /// Only these values (compared without regard to ASCII case): they ask for what Tessera does.
    Only(&'static [&'static str]),
    /// `STANDARD`: Tessera has one storage class. A class AWS does not have either is AWS's
    /// `InvalidStorageClass`.
    StandardStorageClass,
}

use Accepted::*;

/// A header or query parameter that Tessera does not implement in full.
struct Rule {
    place: Place,
    name: &'static str,
    /// What the 501 says is not implemented.
    feature: &'static str,
    accepted: Accepted,
    /// The operations whose AWS request syntax has it.
    operations: &'static [Operation],
}

const fn in_header(
    name: &'static str,
    feature: &'static str,
    accepted: Accepted,
    operations: &'static [Operation],
) -> Rule {
    Rule {
        place: Place::Header,
        name,
        feature,
        accepted,
        operations,
    }
}

/// A ListBuckets parameter that is not implemented.
const fn in_query(name: &'static str, feature: &'static str) -> Rule {
    Rule {
        place: Place::Query,
        name,
        feature,
        accepted: Nothing,
        operations: &[ListBuckets],
    }
}

/// The operations that write a new object version with its metadata.
const OBJECT_WRITES: &[Operation] = &[PutObject, CopyObject, CreateMultipartUpload];

/// The operations whose body may carry an `x-amz-checksum-*` value.
const CHECKSUMMED: &[Operation] = &[PutObject, UploadPart, CompleteMultipartUpload];

/// The operations that take `x-amz-sdk-checksum-algorithm` for their body's checksum.
const SDK_CHECKSUMMED: &[Operation] = &[
    PutObject,
    UploadPart,
    DeleteObjects,
    PutBucketTagging,
    PutObjectTagging,
    PutBucketCors,
    PutBucketReplication,
    PutBucketVersioning,
    PutBucketLifecycleConfiguration,
    PutBucketEncryption,
    PutObjectLockConfiguration,
    PutObjectRetention,
    PutObjectLegalHold,
    PutBucketAcl,
    PutObjectAcl,
    PutBucketOwnershipControls,
    PutBucketPolicy,
];

/// The operations with `x-amz-request-payer`.
const REQUEST_PAYER: &[Operation] = &[
    PutObject,
    GetObject,
    HeadObject,
    CopyObject,
    DeleteObject,
    DeleteObjects,
    PutObjectTagging,
    GetObjectTagging,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    PutObjectLockConfiguration,
    GetObjectLockConfiguration,
    PutObjectRetention,
    GetObjectRetention,
    PutObjectLegalHold,
    GetObjectLegalHold,
    GetObjectAttributes,
    GetObjectAcl,
    PutObjectAcl,
];

const LISTINGS: &[Operation] = &[ListObjects, ListObjectsV2, ListObjectVersions];

/// The checksum algorithms of `crate::s3::checksum::Algorithm`, by their S3 names.
const CHECKSUM_ALGORITHMS: &[&str] = &["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// Every storage class AWS knows (a PUT with another is `InvalidStorageClass`).
const AWS_STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
    "FSX_OPENZFS",
    "FSX_ONTAP",
    "AWS_BACKUP_WARM",
    "AWS_BACKUP_LOW_COST_WARM",
];

/// Every header and parameter AWS documents for an operation above that Tessera does not
/// implement in full. One rule a line: the name, what the 501 says is not implemented (it reads
/// "... is not implemented by Tessera."), the values accepted, the operations.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    in_header("x-amz-bucket-namespace", "The account-regional bucket namespace", Only(&["global"]), &[CreateBucket]),
    // Encryption at rest: SSE-S3 and SSE-C are implemented (`api::encryption`), SSE-KMS is not.
    in_header("x-amz-server-side-encryption-aws-kms-key-id", "SSE-KMS", Nothing, OBJECT_WRITES),
    in_header("x-amz-server-side-encryption-context", "SSE-KMS", Nothing, OBJECT_WRITES),
    in_header("x-amz-server-side-encryption-bucket-key-enabled", "SSE-KMS", Nothing, OBJECT_WRITES),
    // Object Lock is implemented (`api::object_lock`) but for event holds, which no object
    // has, and the token of the old way of enabling it on an existing bucket.
    in_header("x-amz-object-lock-event-hold", "An Object Lock event hold", Only(&["OFF"]), OBJECT_WRITES),
    in_header("x-amz-object-lock-event-hold-duration-days", "An Object Lock event hold", Nothing, OBJECT_WRITES),
    in_header("x-amz-object-lock-event-hold-duration-years", "An Object Lock event hold", Nothing, OBJECT_WRITES),
    in_header("x-amz-bucket-object-lock-token", "An Object Lock token", Nothing, &[PutObjectLockConfiguration, PutBucketReplication]),
    in_header("x-amz-mfa", "MFA delete", Nothing, &[DeleteObject, DeleteObjects, PutBucketVersioning]),
    // Other per-object features.
    in_header("x-amz-storage-class", "A storage class other than STANDARD", StandardStorageClass, OBJECT_WRITES),
    in_header("x-amz-website-redirect-location", "A website redirect", Nothing, OBJECT_WRITES),
    in_header("x-amz-write-offset-bytes", "Appending to an object", Nothing, &[PutObject]),
    in_header("x-amz-object-annotation-directive", "An annotation directive other than COPY", Only(&["COPY"]), &[CopyObject]),
    // Conditions the handlers do not evaluate.
    in_header("if-match", "A conditional copy", Nothing, &[CopyObject]),
    in_header("if-none-match", "A conditional copy", Nothing, &[CopyObject]),
    in_header("if-match", "A conditional delete", Nothing, &[DeleteObject]),
    in_header("x-amz-if-match-last-modified-time", "A conditional delete", Nothing, &[DeleteObject]),
    in_header("x-amz-if-match-size", "A conditional delete", Nothing, &[DeleteObject]),
    in_header("x-amz-if-match-initiated-time", "A conditional abort", Nothing, &[AbortMultipartUpload]),
    in_header("x-amz-mp-object-size", "Checking x-amz-mp-object-size", Nothing, &[CompleteMultipartUpload]),
    // Checksums: a copy computes none, and the newer algorithms are not implemented.
    in_header("x-amz-checksum-algorithm", "A checksum of a copy", Nothing, &[CopyObject]),
    in_header("x-amz-sdk-checksum-algorithm", "This checksum algorithm", Only(CHECKSUM_ALGORITHMS), SDK_CHECKSUMMED),
    in_header("x-amz-checksum-sha512", "The SHA512 checksum", Nothing, CHECKSUMMED),
    in_header("x-amz-checksum-md5", "The MD5 checksum", Nothing, CHECKSUMMED),
    in_header("x-amz-checksum-xxhash64", "The XXHASH64 checksum", Nothing, CHECKSUMMED),
    in_header("x-amz-checksum-xxhash3", "The XXHASH3 checksum", Nothing, CHECKSUMMED),
    in_header("x-amz-checksum-xxhash128", "The XXHASH128 checksum", Nothing, CHECKSUMMED),
    // Requester pays: nobody is charged here; the header only acknowledges charges, and AWS
    // ignores it too on a bucket that is not requester-pays.
    in_header("x-amz-request-payer", "Request payment", Only(&["requester"]), REQUEST_PAYER),
    // No object is archived, so none has a restore status to show.
    in_header("x-amz-optional-object-attributes", "An optional object attribute", Only(&["RestoreStatus"]), LISTINGS),
    // Lifecycle transitions are refused, so the minimum size of a transition is moot.
    in_header("x-amz-transition-default-minimum-object-size", "A lifecycle transition", Only(&["varies_by_storage_class", "all_storage_classes_128K"]), &[PutBucketLifecycleConfiguration]),
    in_header(
        "x-amz-confirm-remove-self-bucket-access",
        "Confirming the removal of one's own access (the configured key never loses it)",
        Only(&["false"]),
        &[PutBucketPolicy],
    ),
    // ListBuckets pages and filters by prefix, but does not show or filter by region.
    in_query("bucket-region", "Filtering the bucket list by region"),
];

/// Refuses a request that carries a header or parameter of its operation that Tessera does not
/// implement with the value given.
pub fn check(operation: Option<Operation>, parts: &Parts, query: &Query) -> Result<(), S3Error> {
    match operation {
        Some(operation) => check_operation(operation, parts, query),
        None => Ok(()),
    }
}

fn check_operation(operation: Operation, parts: &Parts, query: &Query) -> Result<(), S3Error> {
    for rule in RULES.iter().filter(|r| r.operations.contains(&operation)) {
        // Every value: a header sent twice must not slip a second value past the first.
        let values: Vec<String> = match rule.place {
            Place::Header => parts
                .headers
                .get_all(rule.name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect(),
            Place::Query => query
                .0
                .iter()
                .filter(|(name, _)| name == rule.name)
                .map(|(_, value)| value.clone())
                .collect(),
        };
        for value in values {
            rule.judge(value.trim())?;
        }
    }
    Ok(())
}

impl Rule {
    fn judge(&self, value: &str) -> Result<(), S3Error> {
        let refused = S3Error::NotImplemented(self.feature);
        match self.accepted {
            Nothing => Err(refused),
            Only(values) if values.iter().any(|v| v.eq_ignore_ascii_case(value)) => Ok(()),
            Only(_) => Err(refused),
            StandardStorageClass if value == "STANDARD" => Ok(()),
            StandardStorageClass if AWS_STORAGE_CLASSES.contains(&value) => Err(refused),
            StandardStorageClass => Err(S3Error::InvalidStorageClass),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> (Parts, Query) {
        crate::s3::http::request_head(method.as_str(), uri, headers)
    }

    /// The answer to a request, checked for the operation the router takes it for.
    fn routed(
        parts: &Parts,
        query: &Query,
        has_bucket: bool,
        has_key: bool,
    ) -> Result<(), S3Error> {
        check(
            Operation::of(parts, query, has_bucket, has_key),
            parts,
            query,
        )
    }

    /// The answer to an object PUT with these headers.
    fn put(headers: &[(&str, &str)]) -> Result<(), S3Error> {
        let (parts, query) = request(Method::PUT, "/b/k", headers);
        routed(&parts, &query, true, true)
    }

    #[test]
    fn operations_are_told_apart_as_the_router_does() {
        let cases = [
            (Method::GET, "/", false, false, &[][..], Some(ListBuckets)),
            (Method::PUT, "/b", true, false, &[], Some(CreateBucket)),
            (Method::PUT, "/b?acl", true, false, &[], Some(PutBucketAcl)),
            (
                Method::GET,
                "/b?list-type=2",
                true,
                false,
                &[],
                Some(ListObjectsV2),
            ),
            (
                Method::GET,
                "/b?prefix=a",
                true,
                false,
                &[],
                Some(ListObjects),
            ),
            (
                Method::GET,
                "/b?versions",
                true,
                false,
                &[],
                Some(ListObjectVersions),
            ),
            (
                Method::POST,
                "/b?delete",
                true,
                false,
                &[],
                Some(DeleteObjects),
            ),
            (Method::PUT, "/b/k", true, true, &[], Some(PutObject)),
            (
                Method::PUT,
                "/b/k",
                true,
                true,
                &[("x-amz-copy-source", "b/j")],
                Some(CopyObject),
            ),
            (
                Method::PUT,
                "/b/k?partNumber=1&uploadId=u",
                true,
                true,
                &[],
                Some(UploadPart),
            ),
            (
                Method::PUT,
                "/b/k?partNumber=1&uploadId=u",
                true,
                true,
                &[("x-amz-copy-source", "b/j")],
                Some(UploadPartCopy),
            ),
            (
                Method::PUT,
                "/b/k?tagging",
                true,
                true,
                &[],
                Some(PutObjectTagging),
            ),
            (
                Method::POST,
                "/b/k?uploads",
                true,
                true,
                &[],
                Some(CreateMultipartUpload),
            ),
            (
                Method::POST,
                "/b/k?uploadId=u",
                true,
                true,
                &[],
                Some(CompleteMultipartUpload),
            ),
            (
                Method::GET,
                "/b/k?uploadId=u",
                true,
                true,
                &[],
                Some(ListParts),
            ),
            (
                Method::DELETE,
                "/b/k?uploadId=u",
                true,
                true,
                &[],
                Some(AbortMultipartUpload),
            ),
            (Method::DELETE, "/b/k", true, true, &[], Some(DeleteObject)),
            (
                Method::PUT,
                "/b?object-lock",
                true,
                false,
                &[],
                Some(PutObjectLockConfiguration),
            ),
            (
                Method::GET,
                "/b?object-lock",
                true,
                false,
                &[],
                Some(GetObjectLockConfiguration),
            ),
            (
                Method::PUT,
                "/b/k?retention&versionId=null",
                true,
                true,
                &[],
                Some(PutObjectRetention),
            ),
            (
                Method::GET,
                "/b/k?retention",
                true,
                true,
                &[],
                Some(GetObjectRetention),
            ),
            (
                Method::PUT,
                "/b/k?legal-hold",
                true,
                true,
                &[],
                Some(PutObjectLegalHold),
            ),
            (
                Method::GET,
                "/b/k?legal-hold",
                true,
                true,
                &[],
                Some(GetObjectLegalHold),
            ),
            (Method::HEAD, "/b/k", true, true, &[], Some(HeadObject)),
            (Method::PUT, "/b/k?acl", true, true, &[], Some(PutObjectAcl)),
            (Method::GET, "/b?acl", true, false, &[], Some(GetBucketAcl)),
            (
                Method::DELETE,
                "/b?ownershipControls",
                true,
                false,
                &[],
                Some(DeleteBucketOwnershipControls),
            ),
            (
                Method::GET,
                "/b/k?attributes&versionId=null",
                true,
                true,
                &[],
                Some(GetObjectAttributes),
            ),
        ];
        for (method, uri, has_bucket, has_key, headers, expected) in cases {
            let (parts, query) = request(method, uri, headers);
            assert_eq!(
                Operation::of(&parts, &query, has_bucket, has_key),
                expected,
                "{uri}"
            );
        }
    }

    #[test]
    fn values_that_mean_what_tessera_does_are_accepted() {
        for header in [
            ("x-amz-acl", "private"),
            ("x-amz-acl", "bucket-owner-full-control"),
            ("x-amz-storage-class", "STANDARD"),
            ("x-amz-object-lock-event-hold", "OFF"),
            ("x-amz-request-payer", "requester"),
            ("x-amz-sdk-checksum-algorithm", "crc32c"),
            ("x-amz-meta-anything", "kept"),
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ] {
            assert!(put(&[header]).is_ok(), "{header:?}");
        }
    }

    #[test]
    fn features_tessera_lacks_are_not_implemented() {
        for header in [
            ("x-amz-server-side-encryption-aws-kms-key-id", "k"),
            ("x-amz-object-lock-event-hold", "ON"),
            ("x-amz-storage-class", "GLACIER"),
            ("x-amz-website-redirect-location", "/elsewhere"),
            ("x-amz-write-offset-bytes", "0"),
            ("x-amz-sdk-checksum-algorithm", "SHA512"),
            ("x-amz-checksum-xxhash64", "AAAAAAAAAAA="),
        ] {
            let refused = put(&[header]);
            assert!(
                matches!(refused, Err(S3Error::NotImplemented(_))),
                "{header:?}"
            );
        }
    }

    #[test]
    fn aws_errors_are_given_where_aws_defines_them() {
        assert!(matches!(
            put(&[("x-amz-storage-class", "CHEAPEST")]),
            Err(S3Error::InvalidStorageClass)
        ));
    }

    #[test]
    fn a_header_counts_only_for_the_operations_aws_documents_it_for() {
        // An SSE-KMS key id on a GET is not part of GetObject's request syntax: AWS ignores it.
        let (parts, query) = request(
            Method::GET,
            "/b/k",
            &[("x-amz-server-side-encryption-aws-kms-key-id", "k")],
        );
        assert!(routed(&parts, &query, true, true).is_ok());
        let (parts, query) = request(
            Method::PUT,
            "/b/k",
            &[("x-amz-server-side-encryption-aws-kms-key-id", "k")],
        );
        assert!(routed(&parts, &query, true, true).is_err());
        let (parts, query) = request(
            Method::PUT,
            "/b?object-lock",
            &[("x-amz-bucket-object-lock-token", "t")],
        );
        assert!(matches!(
            routed(&parts, &query, true, false),
            Err(S3Error::NotImplemented(_))
        ));
        let (parts, query) = request(Method::GET, "/?bucket-region=us-east-1", &[]);
        assert!(routed(&parts, &query, false, false).is_err());
        let (parts, query) = request(Method::GET, "/b?prefix=a", &[]);
        assert!(routed(&parts, &query, true, false).is_ok());
    }

    #[test]
    fn get_object_attributes_takes_sse_c_and_the_requester_paying() {
        let attributes = |header: (&str, &str)| {
            let (parts, query) = request(Method::GET, "/b/k?attributes", &[header]);
            routed(&parts, &query, true, true)
        };
        let sse_c = ("x-amz-server-side-encryption-customer-algorithm", "AES256");
        assert!(attributes(sse_c).is_ok());
        assert!(attributes(("x-amz-request-payer", "requester")).is_ok());
    }

    #[test]
    fn the_checksum_names_are_those_tessera_implements() {
        let names: Vec<&str> = crate::s3::checksum::Algorithm::ALL
            .iter()
            .map(|a| a.name())
            .collect();
        assert_eq!(names, CHECKSUM_ALGORITHMS);
    }
}
