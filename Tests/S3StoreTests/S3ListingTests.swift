@testable import S3Store
import XCTest

/// ListObjectsV2 answers as S3 writes them (entities, truncation, LastModified) and as a broken
/// server might (missing parts): read without crashing, nothing invented.
final class S3ListingTests: XCTestCase {
    private func listing(_ text: String) -> S3Listing {
        Array(text.utf8).withUnsafeBytes { S3Listing(parsing: $0) }
    }

    func testAPageWithKeysTimesAndAContinuationToken() {
        let page = listing("""
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>kb/prod/</Prefix>
            <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
            <Contents><Key>kb/prod/aws-kms-key.1.1</Key><LastModified>2026-12-02T14:19:08.000Z</LastModified><Size>184</Size></Contents>
            <Contents><Key>kb/prod/a&amp;b</Key><Size>1</Size></Contents>
            <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>
            """)
        XCTAssertEqual(page.keys, ["kb/prod/aws-kms-key.1.1", "kb/prod/a&b"])
        XCTAssertEqual(page.lastModified["kb/prod/aws-kms-key.1.1"], 1_796_221_148_000)
        XCTAssertNil(page.lastModified["kb/prod/a&b"])
        XCTAssertTrue(page.isTruncated)
        XCTAssertEqual(page.nextContinuationToken, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    }

    func testAnEmptyOrBrokenAnswerListsNothing() {
        for text in ["", "<ListBucketResult/>", "<ListBucketResult><Contents><Key>x", "<Contents></Contents>", "not xml at all"] {
            let page = listing(text)
            XCTAssertFalse(page.isTruncated, text)
            XCTAssertNil(page.nextContinuationToken, text)
        }
        XCTAssertEqual(listing("<Contents></Contents>").keys, [])
    }
}
