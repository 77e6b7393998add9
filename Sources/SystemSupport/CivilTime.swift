import Glibc

/// Wall-clock seconds since the epoch.
public func unixNow() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec)
}

/// Wall-clock milliseconds since the epoch (file times are compared with it).
public func unixNowMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// UTC calendar fields of a Unix time, and back (proleptic Gregorian; no time zone database).
public struct CivilTime: Equatable, Sendable {
    public var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
    }

    public init(unix: Int64) {
        let days = Int(unix >= 0 ? unix / 86400 : (unix - 86399) / 86400)
        let seconds = Int(unix - Int64(days) * 86400)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        self.init(year: yoe + era * 400 + (month <= 2 ? 1 : 0), month: month, day: day,
                  hour: seconds / 3600, minute: seconds / 60 % 60, second: seconds % 60)
    }

    public var unix: Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// `2015-08-30T12:36:00Z`, for log lines and expirations.
    public var iso8601: String {
        "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2))T\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):\(Self.pad(second, 2))Z"
    }

    /// `20150830`, ISO 8601's basic date (SigV4's credential scope).
    public var basicDate: String { Self.pad(year, 4) + Self.pad(month, 2) + Self.pad(day, 2) }

    /// `20150830T123600Z` (SigV4's `X-Amz-Date`).
    public var basicTimestamp: String { basicDate + "T" + Self.pad(hour, 2) + Self.pad(minute, 2) + Self.pad(second, 2) + "Z" }

    /// ISO 8601 as AWS writes expirations: `2024-05-01T12:00:00Z`, with optional fractional seconds
    /// and a `Z` or `±HH:MM` offset.
    public static func parseISO8601(_ text: String) -> Int64? {
        let chars = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= chars.count else { return nil }
            var value = 0
            for c in chars[start..<(start + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return nil }
                value = value * 10 + Int(c - UInt8(ascii: "0"))
            }
            return value
        }
        guard chars.count >= 19, let year = number(0, 4), chars[4] == UInt8(ascii: "-"), let month = number(5, 2),
              chars[7] == UInt8(ascii: "-"), let day = number(8, 2), chars[10] == UInt8(ascii: "T") || chars[10] == UInt8(ascii: " "),
              let hour = number(11, 2), chars[13] == UInt8(ascii: ":"), let minute = number(14, 2),
              chars[16] == UInt8(ascii: ":"), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        if index < chars.count, chars[index] == UInt8(ascii: ".") {
            index += 1
            while index < chars.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(chars[index]) { index += 1 }
        }
        var offset = 0
        if index < chars.count {
            switch chars[index] {
            case UInt8(ascii: "Z"), UInt8(ascii: "z"):
                index += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard let h = number(index + 1, 2), let m = number(index + 4, 2) else { return nil }
                offset = (h * 3600 + m * 60) * (chars[index] == UInt8(ascii: "-") ? -1 : 1)
                index += 6
            default:
                return nil
            }
        }
        guard index == chars.count else { return nil }
        return CivilTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second).unix - Int64(offset)
    }
}
