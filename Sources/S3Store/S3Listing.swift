import AWSCore
import SystemSupport

/// One page of a ListObjectsV2 answer: the keys, and where the next page starts.
///
///     <ListBucketResult><IsTruncated>true</IsTruncated>
///       <Contents><Key>p/i/aws-kms-key.1.1</Key>…</Contents>…
///       <NextContinuationToken>…</NextContinuationToken></ListBucketResult>
struct S3Listing: Sendable, Equatable {
    var keys: [String] = []
    /// Each key's LastModified (Unix milliseconds), when S3 gave a readable one.
    var lastModified: [String: Int64] = [:]
    var isTruncated = false
    var nextContinuationToken: String?

    init(parsing bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while let contents = XMLText.range("Contents", in: bytes, from: offset) {
            let inner = UnsafeRawBufferPointer(rebasing: bytes[contents])
            if let key = XMLText.first("Key", in: inner) {
                keys.append(key)
                if let time = XMLText.first("LastModified", in: inner).flatMap(CivilTime.parseISO8601) { lastModified[key] = time * 1000 }
            }
            offset = contents.upperBound
        }
        isTruncated = XMLText.first("IsTruncated", in: bytes) == "true"
        nextContinuationToken = XMLText.first("NextContinuationToken", in: bytes)
    }
}
