import AWSCore
import AWSKMS
import Foundation
import ProviderSettings
import S3Store

// A test tool, not a product: signs KMS requests exactly as keybrokerd would, for the test that
// compares the signatures with botocore's. Reads a JSON list of cases on stdin, writes a JSON list
// of signed requests on stdout; exits 1 with one line on stderr for input it cannot use.
//
//     [{"operation": "Decrypt", "members": [["KeyId", "k"]], "endpoint": "https://kms.us-east-1.amazonaws.com/",
//       "region": "us-east-1", "access_key": "AKID", "secret_key": "…", "session_token": null, "time": 1440938160}]
//
// A case with "service": "s3" signs an S3 call instead: "operation" is GetObject, PutObject (the
// create-if-absent) or ListObjectsV2, with "bucket", "path_style", "key" or "prefix" and
// "continuation_token", and "body" (text) for PutObject.

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("keybroker-sigv4-check: \(message)\n".utf8))
    exit(1)
}

let input = FileHandle.standardInput.readDataToEndOfFile()
guard let cases = (try? JSONSerialization.jsonObject(with: input)) as? [[String: Any]] else {
    fail("expected a JSON list of cases on stdin")
}
var results: [[String: Any]] = []
for item in cases {
    guard let operation = item["operation"] as? String, let endpointText = item["endpoint"] as? String,
          let endpoint = Endpoint(parsing: endpointText), let region = item["region"] as? String,
          let accessKey = item["access_key"] as? String, let secretKey = item["secret_key"] as? String,
          let time = (item["time"] as? NSNumber)?.int64Value
    else { fail("a case lacks operation, endpoint, region, access_key, secret_key or time") }
    let members = ((item["members"] as? [[String]]) ?? []).compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
    let credentials = AWSCredentials(accessKeyID: accessKey, secretAccessKey: secretKey,
                                     sessionToken: item["session_token"] as? String, source: "test")
    if item["service"] as? String == "s3" {
        guard let bucket = item["bucket"] as? String else { fail("an s3 case lacks bucket") }
        let addressing = S3Addressing(bucket: bucket, endpoint: endpoint, pathStyle: item["path_style"] as? Bool ?? true)
        let call: AWSRequester.Call
        switch operation {
        case "GetObject": call = addressing.getObject(item["key"] as? String ?? "")
        case "PutObject": call = addressing.putObjectIfAbsent(item["key"] as? String ?? "", bytes: Array((item["body"] as? String ?? "").utf8))
        case "ListObjectsV2": call = addressing.listObjects(prefix: item["prefix"] as? String ?? "", continuationToken: item["continuation_token"] as? String)
        default: fail("unknown s3 operation \(operation)")
        }
        let (url, signed) = addressing.signed(call, region: region, credentials: credentials, time: time)
        results.append([
            "url": url, "method": call.method,
            "body": String(decoding: call.body, as: UTF8.self),
            "headers": signed.headers.map { [$0.0, $0.1] },
            "canonical_request": signed.canonicalRequest,
            "string_to_sign": signed.stringToSign,
        ])
        continue
    }
    let (body, signed) = KMSRequest.signed(operation: operation, members: members, endpoint: endpoint, region: region,
                                           credentials: credentials, time: time)
    results.append([
        "url": endpoint.url,
        "body": String(decoding: body, as: UTF8.self),
        "headers": signed.headers.map { [$0.0, $0.1] },
        "canonical_request": signed.canonicalRequest,
        "string_to_sign": signed.stringToSign,
    ])
}
guard let output = try? JSONSerialization.data(withJSONObject: results, options: [.sortedKeys]) else { fail("cannot encode the results") }
FileHandle.standardOutput.write(output)
