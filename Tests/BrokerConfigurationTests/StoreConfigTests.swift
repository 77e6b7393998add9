import BrokerConfiguration
import ProviderSettings
import XCTest

/// `store`, `store_endpoint_url`, `store_refresh_ms`, and `region` for every provider with a store (issue 13).
final class StoreConfigTests: XCTestCase {
    private func instance(_ lines: String, provider: String = "local") throws -> InstanceConfig {
        let master = provider == "local" ? "master_key_file = \"/etc/keybroker/master.key\"" : "master_key_id = \"alias/k\""
        let config = try BrokerConfig.parse("[instances.db]\nprovider = \"\(provider)\"\n\(master)\n\(lines)\n", file: "/etc/kb.toml")
        return try XCTUnwrap(config.instance(named: "db"))
    }

    private func assertError(_ lines: String, key: String, contains fragment: String, provider: String = "local", line: UInt = #line) {
        XCTAssertThrowsError(try instance(lines, provider: provider), line: line) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(error.key, key, error.description, line: line)
            XCTAssertTrue(error.description.contains(fragment), error.description, line: line)
            XCTAssertFalse(error.description.contains("\n"), line: line)
        }
    }

    func testWithoutAStoreTheKeysStayLocal() throws {
        XCTAssertEqual(try instance("").store, .local)
    }

    func testAStoreWithItsSettings() throws {
        let store = try instance("""
            store = "s3://my-bucket/keybroker/prod/"
            store_endpoint_url = "http://127.0.0.1:9000"
            store_refresh_ms = 500
            region = "eu-west-1"
            """).store
        XCTAssertEqual(store, .s3(S3StoreSettings(bucket: "my-bucket", prefix: "keybroker/prod", endpointURL: "http://127.0.0.1:9000",
                                                  refreshMilliseconds: 500, region: "eu-west-1")))
        XCTAssertEqual(try instance("store = \"s3://b.with.dots\"").store,
                       .s3(S3StoreSettings(bucket: "b.with.dots", prefix: "")))
    }

    func testTheAWSProvidersRegionProfileAndRetriesServeItsStore() throws {
        let store = try instance("store = \"s3://bkt/p\"\nregion = \"ap-south-1\"\nprofile = \"db\"\nmax_retries = 5", provider: "aws").store
        guard case let .s3(settings) = store else { return XCTFail("no store") }
        XCTAssertEqual(settings.region, "ap-south-1")
        XCTAssertEqual(settings.profile, "db")
        XCTAssertEqual(settings.maxRetries, 5)
    }

    func testBadStoreSettingsAreNamed() {
        assertError("store = \"https://bkt/p\"", key: "instances.db.store", contains: "must be an s3://BUCKET/PREFIX URL")
        assertError("store = \"s3://UPPER/p\"", key: "instances.db.store", contains: "is not an S3 bucket name")
        assertError("store = \"s3://ab/p\"", key: "instances.db.store", contains: "is not an S3 bucket name")
        assertError("store = \"s3://-bkt/p\"", key: "instances.db.store", contains: "is not an S3 bucket name")
        assertError("store = \"s3://bkt/a//b\"", key: "instances.db.store", contains: "may use letters")
        assertError("store = \"s3://bkt/a/../b\"", key: "instances.db.store", contains: "may use letters")
        assertError("store = \"s3://bkt/a b\"", key: "instances.db.store", contains: "may use letters")
        assertError("store = \"s3://bkt\"\nstore_refresh_ms = 99", key: "instances.db.store_refresh_ms", contains: "100")
        assertError("store = \"s3://bkt\"\nstore_endpoint_url = \"bkt.example\"", key: "instances.db.store_endpoint_url", contains: "is not an http://")
        assertError("store = \"s3://bkt\"\nregion = \"EU\"", key: "instances.db.region", contains: "is not a region name")
    }

    func testStoreSettingsWithoutAStoreAreRefused() {
        assertError("store_refresh_ms = 1000", key: "instances.db.store_refresh_ms", contains: "applies only with store")
        assertError("store_endpoint_url = \"http://x\"", key: "instances.db.store_endpoint_url", contains: "applies only with store")
        assertError("region = \"us-east-1\"", key: "instances.db.region", contains: "applies to provider \"aws\" only")
    }
}
