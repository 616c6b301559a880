// Prints a URL presigned by the AWS SDK for JavaScript v3, as a web app's server makes one for a
// browser. Driven by tests/clients/test_js_presigned.py, with one argument, a JSON object:
//   endpoint, region, accessKey, secretKey  where and as whom
//   command                                 "GetObject" or "PutObject"
//   params                                  the command's input (Bucket, Key, Body, ChecksumMode...)
//   checksum                                the client's requestChecksumCalculation
//                                           ("WHEN_SUPPORTED", the SDK's default, or "WHEN_REQUIRED")
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const COMMANDS = { GetObject: GetObjectCommand, PutObject: PutObjectCommand };

const request = JSON.parse(process.argv[2]);
const client = new S3Client({
  endpoint: request.endpoint,
  region: request.region,
  forcePathStyle: true,
  credentials: { accessKeyId: request.accessKey, secretAccessKey: request.secretKey },
  requestChecksumCalculation: request.checksum ?? "WHEN_SUPPORTED",
});
const command = new COMMANDS[request.command](request.params);
process.stdout.write(await getSignedUrl(client, command, { expiresIn: 300 }));
