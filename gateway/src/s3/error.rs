//! Every way an S3 request can fail, and the one place that maps each to its S3 code and status.

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("Access Denied: {0}")]
    AccessDenied(&'static str),
    /// A delete of a version under an Object Lock retention or legal hold.
    #[error("Access Denied because object protected by object lock.")]
    ObjectLocked,
    #[error("The AWS access key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    #[error("The request signature we calculated does not match the signature you provided.")]
    SignatureDoesNotMatch,
    #[error("The authorization header is malformed: {0}")]
    AuthorizationHeaderMalformed(&'static str),
    #[error("The difference between the request time and the server's time is too large.")]
    RequestTimeTooSkewed,
    #[error("{0}")]
    AuthorizationQueryParametersError(&'static str),
    #[error("Your request header section exceeds the maximum allowed size.")]
    RequestHeaderSectionTooLarge,
    #[error("Your metadata headers exceed the maximum allowed metadata size.")]
    MetadataTooLarge,
    #[error("Your socket connection to the server was not read from or written to within the timeout period.")]
    RequestTimeout,
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    /// The key's current version is a delete marker (S3 answers NoSuchKey and names the marker).
    #[error("The specified key does not exist.")]
    DeleteMarker { version_id: Option<String> },
    /// A GET or HEAD of a delete marker by its version id.
    #[error("The specified method is not allowed against this resource.")]
    DeleteMarkerVersion { version_id: String },
    #[error("The specified version does not exist.")]
    NoSuchVersion,
    #[error("The specified multipart upload does not exist.")]
    NoSuchUpload,
    /// The admin API names an access key that does not exist.
    #[error("The specified access key does not exist.")]
    NoSuchAccessKey,
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    #[error("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")]
    BucketAlreadyExists,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("The specified bucket is not valid.")]
    InvalidBucketName,
    /// A bucket policy outside the subset Tessera enforces, or not a policy at all.
    #[error("{0}")]
    MalformedPolicy(String),
    #[error("The bucket policy does not exist")]
    NoSuchBucketPolicy,
    #[error("The storage class you specified is not valid")]
    InvalidStorageClass,
    #[error("Your key is too long")]
    KeyTooLongError,
    #[error("The requested range is not satisfiable")]
    InvalidRange,
    #[error("The {0} you specified did not match the calculated checksum.")]
    BadDigest(&'static str),
    #[error("The Content-MD5 or checksum value you specified is not valid.")]
    InvalidDigest,
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    #[error(
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )]
    IncompleteBody,
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    #[error("Your proposed upload exceeds the maximum allowed size.")]
    EntityTooLarge,
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Couldn't parse the specified URI.")]
    InvalidUri,
    #[error("The XML you provided was not well-formed or did not validate against our published schema.")]
    MalformedXml,
    #[error(
        "One or more of the specified parts could not be found or its entity tag did not match."
    )]
    InvalidPart,
    #[error("The list of parts was not in ascending order.")]
    InvalidPartOrder,
    #[error("At least one of the preconditions you specified did not hold.")]
    PreconditionFailed,
    #[error("A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.")]
    ConditionalRequestConflict,
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    #[error("{0}")]
    InvalidBucketState(&'static str),
    /// A browser upload whose form breaks its policy (S3's `AccessDenied`).
    #[error("Invalid according to Policy: {0}")]
    PolicyDenied(String),
    #[error("{0}")]
    InvalidPolicyDocument(String),
    #[error("The body of your POST request is not well-formed multipart/form-data.")]
    MalformedPostRequest,
    #[error("Your POST request fields preceding the upload file were too large.")]
    MaxPostPreDataLengthExceeded,
    #[error("Object Lock configuration does not exist for this bucket")]
    ObjectLockConfigurationNotFound,
    #[error("The specified object does not have a ObjectLock configuration")]
    NoSuchObjectLockConfiguration,
    #[error("The TagSet does not exist")]
    NoSuchTagSet,
    #[error("The CORS configuration does not exist")]
    NoSuchCorsConfiguration,
    #[error("The lifecycle configuration does not exist")]
    NoSuchLifecycleConfiguration,
    #[error("The replication configuration was not found")]
    ReplicationConfigurationNotFound,
    #[error("{0}")]
    InvalidTag(&'static str),
    #[error("The server side encryption configuration was not found")]
    NoSuchEncryptionConfiguration,
    #[error("The Encryption request you specified is not valid. Supported value: AES256.")]
    InvalidEncryptionAlgorithm,
    /// A CORS preflight that no rule allows (S3's `AccessForbidden`).
    #[error("CORSResponse: {0}")]
    CorsForbidden(&'static str),
    /// A CORS preflight without the headers it needs (S3's `BadRequest`).
    #[error("{0}")]
    CorsBadRequest(&'static str),
    #[error("The XML you provided was not well-formed or did not validate against our published schema: {0}")]
    MalformedAcl(&'static str),
    #[error("The bucket does not allow ACLs")]
    AccessControlListNotSupported,
    #[error("The bucket ownership controls were not found")]
    OwnershipControlsNotFound,
    #[error("Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting")]
    InvalidBucketAclWithObjectOwnership,
    #[error("{0} is not implemented by Tessera.")]
    NotImplemented(&'static str),
    /// The detail (which nodes, what they said) is for the log, not the client.
    #[error("Not enough storage nodes answered; please try again.")]
    ServiceUnavailable(String),
    #[error("The storage nodes are out of disk space.")]
    InsufficientStorage(String),
    #[error("We encountered an internal error. Please try again.")]
    Internal(String),
}

impl S3Error {
    pub fn code(&self) -> &'static str {
        use S3Error::*;
        match self {
            AccessDenied(_) | ObjectLocked | PolicyDenied(_) => "AccessDenied",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            MetadataTooLarge => "MetadataTooLarge",
            RequestTimeout => "RequestTimeout",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey | DeleteMarker { .. } => "NoSuchKey",
            DeleteMarkerVersion { .. } => "MethodNotAllowed",
            NoSuchVersion => "NoSuchVersion",
            NoSuchUpload => "NoSuchUpload",
            NoSuchAccessKey => "NoSuchAccessKey",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketNotEmpty => "BucketNotEmpty",
            InvalidBucketName => "InvalidBucketName",
            InvalidStorageClass => "InvalidStorageClass",
            KeyTooLongError => "KeyTooLongError",
            InvalidRange => "InvalidRange",
            BadDigest(_) => "BadDigest",
            InvalidDigest => "InvalidDigest",
            ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            IncompleteBody => "IncompleteBody",
            MissingContentLength => "MissingContentLength",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            InvalidArgument(_) => "InvalidArgument",
            InvalidRequest(_) => "InvalidRequest",
            InvalidUri => "InvalidURI",
            MalformedXml => "MalformedXML",
            MalformedPolicy(_) => "MalformedPolicy",
            NoSuchBucketPolicy => "NoSuchBucketPolicy",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            PreconditionFailed => "PreconditionFailed",
            ConditionalRequestConflict => "ConditionalRequestConflict",
            MethodNotAllowed => "MethodNotAllowed",
            InvalidBucketState(_) => "InvalidBucketState",
            InvalidPolicyDocument(_) => "InvalidPolicyDocument",
            MalformedPostRequest => "MalformedPOSTRequest",
            MaxPostPreDataLengthExceeded => "MaxPostPreDataLengthExceededError",
            ObjectLockConfigurationNotFound => "ObjectLockConfigurationNotFoundError",
            NoSuchObjectLockConfiguration => "NoSuchObjectLockConfiguration",
            NoSuchTagSet => "NoSuchTagSet",
            NoSuchCorsConfiguration => "NoSuchCORSConfiguration",
            NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            ReplicationConfigurationNotFound => "ReplicationConfigurationNotFoundError",
            InvalidTag(_) => "InvalidTag",
            NoSuchEncryptionConfiguration => "ServerSideEncryptionConfigurationNotFoundError",
            InvalidEncryptionAlgorithm => "InvalidEncryptionAlgorithmError",
            CorsForbidden(_) => "AccessForbidden",
            CorsBadRequest(_) => "BadRequest",
            MalformedAcl(_) => "MalformedACLError",
            AccessControlListNotSupported => "AccessControlListNotSupported",
            OwnershipControlsNotFound => "OwnershipControlsNotFoundError",
            InvalidBucketAclWithObjectOwnership => "InvalidBucketAclWithObjectOwnership",
            NotImplemented(_) => "NotImplemented",
            ServiceUnavailable(_) => "ServiceUnavailable",
            InsufficientStorage(_) => "InsufficientStorage",
            Internal(_) => "InternalError",
        }
    }

    pub fn status(&self) -> StatusCode {
        use S3Error::*;
        match self {
            AccessDenied(_)
            | ObjectLocked
            | PolicyDenied(_)
            | InvalidAccessKeyId
            | SignatureDoesNotMatch
            | RequestTimeTooSkewed
            | CorsForbidden(_) => StatusCode::FORBIDDEN,
            NoSuchBucket
            | NoSuchKey
            | DeleteMarker { .. }
            | NoSuchVersion
            | NoSuchUpload
            | NoSuchAccessKey
            | NoSuchBucketPolicy
            | NoSuchTagSet
            | NoSuchCorsConfiguration
            | NoSuchLifecycleConfiguration
            | ReplicationConfigurationNotFound
            | NoSuchEncryptionConfiguration
            | ObjectLockConfigurationNotFound
            | NoSuchObjectLockConfiguration
            | OwnershipControlsNotFound => StatusCode::NOT_FOUND,
            BucketAlreadyOwnedByYou
            | BucketAlreadyExists
            | BucketNotEmpty
            | ConditionalRequestConflict
            | InvalidBucketState(_) => StatusCode::CONFLICT,
            InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            MethodNotAllowed | DeleteMarkerVersion { .. } => StatusCode::METHOD_NOT_ALLOWED,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl S3Error {
    /// Headers S3 sends with this error besides the XML body.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            S3Error::DeleteMarker { version_id } => {
                let mut headers = vec![("x-amz-delete-marker", "true".to_string())];
                if let Some(id) = version_id {
                    headers.push(("x-amz-version-id", id.clone()));
                }
                headers
            }
            S3Error::DeleteMarkerVersion { version_id } => vec![
                ("x-amz-delete-marker", "true".to_string()),
                ("x-amz-version-id", version_id.clone()),
            ],
            _ => Vec::new(),
        }
    }
}
