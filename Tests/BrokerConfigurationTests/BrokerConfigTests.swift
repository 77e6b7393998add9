import BrokerConfiguration
import BrokerPolicy
import XCTest

final class BrokerConfigTests: XCTestCase {
    private func parse(_ text: String) throws -> BrokerConfig {
        try BrokerConfig.parse(text, file: "/etc/keybroker/keybroker.toml")
    }

    private func assertError(_ text: String, key: String?, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text), file: file, line: line) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(error.key, key, error.description, file: file, line: line)
            XCTAssertTrue(error.description.contains(fragment), error.description, file: file, line: line)
            XCTAssertTrue(error.description.hasPrefix("/etc/keybroker/keybroker.toml: "), file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), "one line", file: file, line: line)
        }
    }

    let minimal = """
        [instances.default]
        master_key_file = "/etc/keybroker/master.key"
        """

    func testDefaults() throws {
        let config = try parse(minimal)
        XCTAssertEqual(config.socketPath, "/run/keybroker/keybroker.sock")
        XCTAssertEqual(config.stateDirectory, "/var/lib/keybroker")
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertEqual(config.instances.count, 1)
        let instance = try XCTUnwrap(config.instance(named: "default"))
        XCTAssertEqual(instance.provider, .local(.file("/etc/keybroker/master.key")))
        XCTAssertTrue(instance.autoCreate)
        XCTAssertEqual(instance.keySpec, .aes256)
        XCTAssertEqual(instance.keySpec.byteCount, 32)
    }

    func testFullConfiguration() throws {
        let config = try parse("""
            socket = "/run/kb.sock"
            state_dir = "/srv/kb"
            log_level = "debug"
            admins = ["root", "@wheel", 1000, "27"]
            [instances.a]
            provider = "local"
            clients = ["mysql"]
            auto_create = false
            key_spec = "AES_128"
            master_key_credential = "local-master-key"
            [instances.b]
            master_key_file = "/k"
            """)
        XCTAssertEqual(config.admins, [.user("root"), .group("wheel"), .uid(1000), .uid(27)])
        let a = try XCTUnwrap(config.instance(named: "a"))
        XCTAssertEqual(a.provider, .local(.credential("local-master-key")))
        XCTAssertFalse(a.autoCreate)
        XCTAssertEqual(a.keySpec.byteCount, 16)
        XCTAssertNotNil(config.instance(named: "b"))
    }

    func testUnknownKeyIsNamed() {
        assertError("sockett = \"/x\"\n" + minimal, key: "sockett", contains: "unknown setting")
        assertError(minimal + "\nmaster_key = \"x\"", key: "instances.default.master_key", contains: "unknown setting")
    }

    func testWrongTypeIsNamed() {
        assertError("admins = \"root\"\n" + minimal, key: "admins", contains: "must be a list")
        assertError(minimal + "\nauto_create = \"yes\"", key: "instances.default.auto_create", contains: "true or false")
    }

    func testUnknownProvider() {
        assertError("[instances.default]\nprovider = \"vault\"", key: "instances.default.provider", contains: "unknown provider \"vault\"")
    }

    func testMissingMasterKey() {
        assertError("[instances.default]\nprovider = \"local\"", key: "instances.default.master_key_file", contains: "needs a master key")
    }

    func testBadKeySpecAndLogLevel() {
        assertError(minimal + "\nkey_spec = \"AES_512\"", key: "instances.default.key_spec", contains: "AES_128")
        assertError("log_level = \"loud\"\n" + minimal, key: "log_level", contains: "must be one of")
    }

    func testMetricsListenAndRotateAfter() throws {
        XCTAssertEqual(try parse("metrics_listen = \"127.0.0.1:9464\"\n" + minimal).metricsListen, BrokerConfig.ListenAddress(parsing: "127.0.0.1:9464"))
        XCTAssertEqual(try parse("metrics_listen = \"[::1]:9464\"\n" + minimal).metricsListen?.host, "::1")
        XCTAssertNil(try parse(minimal).metricsListen)
        for bad in ["9464", "127.0.0.1:0", "127.0.0.1:70000", ":9464", "a b:1", "::1:9464"] {
            assertError("metrics_listen = \"\(bad)\"\n" + minimal, key: "metrics_listen", contains: "HOST:PORT")
        }
        XCTAssertEqual(try parse(minimal + "\nrotate_after = \"90d\"").instances[0].rotateAfterSeconds, 90 * 86400)
        XCTAssertEqual(try parse(minimal + "\nrotate_after = \"2s\"").instances[0].rotateAfterSeconds, 2)
        XCTAssertEqual(try parse(minimal + "\nrotate_after = \"12h\"").instances[0].rotateAfterSeconds, 12 * 3600)
        XCTAssertNil(try parse(minimal).instances[0].rotateAfterSeconds)
    }

    /// aws_key_management_log_level's values, in any case; Off and Fatal still log errors.
    func testLogLevelsOfAWSKeyManagement() throws {
        let expected: [(String, BrokerConfig.LogLevel)] = [
            ("Off", .error), ("Fatal", .error), ("Error", .error), ("Warn", .warning), ("Info", .info), ("Debug", .debug),
            ("Trace", .trace), ("TRACE", .trace), ("warning", .warning), ("debug", .debug),
        ]
        for (text, level) in expected {
            XCTAssertEqual(try parse("log_level = \"\(text)\"\n" + minimal).logLevel, level, text)
        }
    }

    func testNoInstances() {
        assertError("socket = \"/run/x.sock\"", key: "instances", contains: "no instance")
    }

    func testSyntaxErrorGivesALine() {
        XCTAssertThrowsError(try parse("socket = \n")) { error in
            XCTAssertTrue("\(error)".contains("line 1"), "\(error)")
        }
    }

    func testBadInstanceName() {
        assertError("[instances.\"../x\"]\nmaster_key_file = \"/k\"", key: "instances.../x", contains: "instance name")
    }

    func testPrincipalParsing() {
        XCTAssertEqual(Principal(parsing: "@mysql"), .group("mysql"))
        XCTAssertEqual(Principal(parsing: "27"), .uid(27))
        XCTAssertEqual(Principal(parsing: "mysql"), .user("mysql"))
        XCTAssertNil(Principal(parsing: "@"))
        XCTAssertNil(Principal(parsing: ""))
    }

    func testAccessListResolvesNames() throws {
        let list = try AccessList.resolve([.user("root"), .group("root"), .uid(4242)], file: "f", key: "admins")
        XCTAssertTrue(list.contains(uid: 0, gid: 99))
        XCTAssertTrue(list.contains(uid: 99, gid: 0))
        XCTAssertTrue(list.contains(uid: 4242, gid: 4242))
        XCTAssertFalse(list.contains(uid: 65534, gid: 65534))
        XCTAssertThrowsError(try AccessList.resolve([.user("no-such-user-kb")], file: "f", key: "admins"))
    }

    // MARK: provider = "aws"

    func testAWSInstance() throws {
        let config = try parse("""
            [instances.prod]
            provider = "aws"
            master_key_id = "alias/mariadb-encryption"
            region = "eu-west-1"
            endpoint_url = "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com"
            sts_endpoint_url = "http://127.0.0.1:5000"
            key_spec = "AES_128"
            request_timeout_ms = 3000
            max_retries = 5
            profile = "mariadb"
            use_fips_endpoint = true
            mfa_serial = "arn:aws:iam::111122223333:mfa/dba"
            prefetch_concurrency = 8
            """)
        let instance = try XCTUnwrap(config.instance(named: "prod"))
        guard case let .aws(aws) = instance.provider else { return XCTFail("not aws") }
        XCTAssertEqual(aws.masterKeyID, "alias/mariadb-encryption")
        XCTAssertEqual(aws.region, "eu-west-1")
        XCTAssertEqual(aws.endpointURL, "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com")
        XCTAssertEqual(aws.stsEndpointURL, "http://127.0.0.1:5000")
        XCTAssertEqual(aws.requestTimeoutMilliseconds, 3000)
        XCTAssertEqual(aws.maxRetries, 5)
        XCTAssertEqual(aws.profile, "mariadb")
        XCTAssertTrue(aws.useFIPSEndpoint)
        XCTAssertEqual(aws.mfaSerial, "arn:aws:iam::111122223333:mfa/dba")
        XCTAssertEqual(aws.concurrency, 8)
        XCTAssertEqual(instance.keySpec, .aes128)
    }

    func testAWSDefaults() throws {
        let config = try parse("""
            [instances.default]
            provider = "aws"
            """)
        guard case let .aws(aws)? = config.instance(named: "default")?.provider else { return XCTFail("not aws") }
        XCTAssertNil(aws.masterKeyID)
        XCTAssertNil(aws.region)
        XCTAssertEqual(aws.requestTimeoutMilliseconds, 5000)
        XCTAssertEqual(aws.maxRetries, 3)
        XCTAssertFalse(aws.useFIPSEndpoint)
    }

    func testProviderSpecificSettingsAreRefusedOnTheOtherProvider() {
        assertError("""
            [instances.default]
            master_key_file = "/k"
            region = "us-east-1"
            """, key: "instances.default.region", contains: "applies to provider \"aws\" only")
        assertError("""
            [instances.default]
            provider = "aws"
            master_key_file = "/k"
            """, key: "instances.default.master_key_file", contains: "applies to provider \"local\" only")
        assertError("""
            [instances.default]
            provider = "aws"
            master_key = "alias/x"
            """, key: "instances.default.master_key", contains: "unknown setting")
    }

    func testAWSValuesAreChecked() {
        assertError("""
            [instances.default]
            provider = "aws"
            region = "US East 1"
            """, key: "instances.default.region", contains: "is not a region name")
        assertError("""
            [instances.default]
            provider = "aws"
            endpoint_url = "kms.example.com"
            """, key: "instances.default.endpoint_url", contains: "is not an http:// or https:// URL")
        assertError("""
            [instances.default]
            provider = "aws"
            max_retries = 50
            """, key: "instances.default.max_retries", contains: "between 0 and 20")
        assertError("""
            [instances.default]
            provider = "aws"
            request_timeout_ms = "5s"
            """, key: "instances.default.request_timeout_ms", contains: "must be an integer")
        assertError("""
            [instances.default]
            provider = "aws"
            master_key_id = "alias/has space"
            """, key: "instances.default.master_key_id", contains: "without spaces")
        assertError("""
            [instances.default]
            provider = "vault"
            """, key: "instances.default.provider", contains: "expected \"local\", \"aws\" or \"kmip\"")
    }

    func testKMIPValuesAreChecked() {
        let base = """
            [instances.default]
            provider = "kmip"
            kmip_server = "kmip.example.com"
            kmip_ca_file = "/etc/keybroker/kmip-ca.pem"
            kmip_client_cert_file = "/etc/keybroker/kmip-client.pem"
            kmip_client_key_file = "/etc/keybroker/kmip-client.key"
            """
        XCTAssertNoThrow(try BrokerConfig.parse(base + "\nmaster_key_id = \"name:mariadb\"\nkmip_batch_size = 1", file: "k.toml"))
        assertError(base + "\nkmip_batch_size = 0", key: "instances.default.kmip_batch_size", contains: "between 1 and 256")
        assertError(base + "\nkmip_protocol_version = \"2.0\"", key: "instances.default.kmip_protocol_version", contains: "\"1.4\", \"1.3\" or \"1.2\"")
        assertError(base + "\nmaster_key_file = \"/k\"", key: "instances.default.master_key_file", contains: "applies to provider \"local\" only")
        assertError(base + "\nprofile = \"x\"", key: "instances.default.profile", contains: "applies to provider \"aws\" only")
        assertError(base.replacingOccurrences(of: "kmip_ca_file = \"/etc/keybroker/kmip-ca.pem\"", with: "kmip_ca_file = \"ca.pem\""),
                    key: "instances.default.kmip_ca_file", contains: "must be an absolute path")
        assertError("[instances.default]\nprovider = \"aws\"\nregion = \"us-east-1\"\nkmip_server = \"k:1\"",
                    key: "instances.default.kmip_server", contains: "applies to provider \"kmip\" only; this instance uses provider \"aws\"")
    }
}
