// ConfigSection: typed, strict reading of one section of a JSON run config. Every error
// names the key as `section.key` and says what was expected.
import Foundation
import SortedKit

struct ConfigSection {
    let name: String
    let values: [String: Any]

    /// Rejects keys outside `allowed`, naming the first unknown one and the known ones.
    init(name: String, values: [String: Any], allowed: [String]) throws {
        self.name = name
        self.values = values
        if let unknown = values.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ConfigError(key: "\(name).\(unknown)",
                              "unknown key; known keys of '\(name)': \(allowed.joined(separator: ", "))")
        }
    }

    private func key(_ k: String) -> String { "\(name).\(k)" }

    static func isBool(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    func has(_ k: String) -> Bool { values[k] != nil && !(values[k] is NSNull) }

    func int(_ k: String, default fallback: Int? = nil, min: Int? = nil) throws -> Int {
        guard has(k) else {
            if let f = fallback { return f }
            throw ConfigError(key: key(k), "is required")
        }
        guard let v = values[k], !Self.isBool(v), let i = v as? Int else {
            throw ConfigError(key: key(k), "expected an integer, got \(describe(values[k]!))")
        }
        if let m = min, i < m { throw ConfigError(key: key(k), "must be at least \(m), got \(i)") }
        return i
    }

    func double(_ k: String, default fallback: Double? = nil) throws -> Double {
        guard has(k) else {
            if let f = fallback { return f }
            throw ConfigError(key: key(k), "is required")
        }
        guard let v = values[k], !Self.isBool(v), let d = v as? Double, d.isFinite else {
            throw ConfigError(key: key(k), "expected a number, got \(describe(values[k]!))")
        }
        return d
    }

    func bool(_ k: String, default fallback: Bool) throws -> Bool {
        guard has(k) else { return fallback }
        guard let v = values[k], Self.isBool(v), let b = v as? Bool else {
            throw ConfigError(key: key(k), "expected true or false, got \(describe(values[k]!))")
        }
        return b
    }

    /// A string value; "" only with `allowEmpty` (an empty path or name is always a mistake).
    func string(_ k: String, default fallback: String? = nil, oneOf choices: [String]? = nil, allowEmpty: Bool = false) throws -> String {
        guard has(k) else {
            if let f = fallback { return f }
            throw ConfigError(key: key(k), "is required")
        }
        guard let s = values[k] as? String else {
            throw ConfigError(key: key(k), "expected a string, got \(describe(values[k]!))")
        }
        if s.isEmpty && !allowEmpty { throw ConfigError(key: key(k), "is empty; give a value or leave the key out") }
        if let c = choices, !c.contains(s) {
            throw ConfigError(key: key(k), "'\(s)' is not one of: \(c.joined(separator: ", "))")
        }
        return s
    }

    func intArray(_ k: String) throws -> [Int]? {
        guard has(k) else { return nil }
        guard let a = values[k] as? [Any], let ints = Optional(a.compactMap { Self.isBool($0) ? nil : $0 as? Int }),
              ints.count == a.count else {
            throw ConfigError(key: key(k), "expected an array of integers, got \(describe(values[k]!))")
        }
        return ints
    }

    func doubleArray(_ k: String) throws -> [Double]? {
        guard has(k) else { return nil }
        guard let a = values[k] as? [Any], let ds = Optional(a.compactMap { Self.isBool($0) ? nil : $0 as? Double }),
              ds.count == a.count else {
            throw ConfigError(key: key(k), "expected an array of numbers, got \(describe(values[k]!))")
        }
        return ds
    }

    private func describe(_ v: Any) -> String {
        if Self.isBool(v) { return "\(v as! Bool)" }
        if let s = v as? String { return "\"\(s)\"" }
        if v is NSNull { return "null" }
        if let d = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed]),
           let s = String(data: d, encoding: .utf8) { return s }
        return "\(v)"
    }
}
