// ConfigSection: typed, strict reading of one section of a JSON run config. Every error
// names the key as `section.key` and says what was expected (RunConfig adds the file, line
// and column).
import Foundation
import SortedFormats
import SortedData
import SortedKit

struct ConfigSection {
    let name: String
    let values: [String: JSONValue]

    /// Rejects keys outside `allowed`, naming the first unknown one and the known ones.
    init(name: String, values: [String: JSONValue], allowed: [String]) throws {
        self.name = name
        self.values = values
        if let unknown = values.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw error(unknown, .unknownKey(section: name, known: allowed))
        }
    }

    func error(_ k: String, _ problem: ConfigError.Problem) -> ConfigError {
        ConfigError(key: "\(name).\(k)", problem)
    }

    func has(_ k: String) -> Bool { values[k].map { !$0.isNull } ?? false }

    /// The value of `k`; nil when it is absent and has a default (an error when it has none).
    private func value(_ k: String, hasDefault: Bool) throws -> JSONValue? {
        guard has(k) else {
            if hasDefault { return nil }
            throw error(k, .missing(hint: nil))
        }
        return values[k]!
    }

    func int(_ k: String, default fallback: Int? = nil, min: Int? = nil) throws -> Int {
        guard let v = try value(k, hasDefault: fallback != nil) else { return fallback! }
        guard let i = v.int else { throw error(k, .wrongType(expected: "an integer", found: v.serialized)) }
        if let m = min, i < m { throw error(k, .belowMinimum(minimum: m, found: i)) }
        return i
    }

    func double(_ k: String, default fallback: Double? = nil) throws -> Double {
        guard let v = try value(k, hasDefault: fallback != nil) else { return fallback! }
        guard let d = v.double, d.isFinite else { throw error(k, .wrongType(expected: "a number", found: v.serialized)) }
        return d
    }

    func bool(_ k: String, default fallback: Bool) throws -> Bool {
        guard let v = try value(k, hasDefault: true) else { return fallback }
        guard let b = v.bool else { throw error(k, .wrongType(expected: "true or false", found: v.serialized)) }
        return b
    }

    /// A string value; "" only with `allowEmpty` (an empty path or name is always a mistake).
    func string(_ k: String, default fallback: String? = nil, allowEmpty: Bool = false) throws -> String {
        guard let v = try value(k, hasDefault: fallback != nil) else { return fallback! }
        guard let s = v.string else { throw error(k, .wrongType(expected: "a string", found: v.serialized)) }
        if s.isEmpty && !allowEmpty { throw error(k, .empty) }
        return s
    }

    /// One of an enum's cases, by its raw value (the choices are listed in case order).
    func choice<Choice: RawRepresentable & CaseIterable>(_ k: String, default fallback: Choice) throws -> Choice
    where Choice.RawValue == String {
        let text = try string(k, default: fallback.rawValue)
        guard let choice = Choice(rawValue: text) else {
            throw error(k, .notOneOf(value: text, choices: Choice.allCases.map(\.rawValue)))
        }
        return choice
    }

    func intArray(_ k: String) throws -> [Int]? {
        try array(k, of: "integers", \.int)
    }

    func doubleArray(_ k: String) throws -> [Double]? {
        try array(k, of: "numbers", \.double)
    }

    private func array<Element>(_ k: String, of what: String, _ element: (JSONValue) -> Element?) throws -> [Element]? {
        guard let v = try value(k, hasDefault: true) else { return nil }
        let items = v.array ?? []
        let elements = items.compactMap(element)
        guard v.array != nil, elements.count == items.count else {
            throw error(k, .wrongType(expected: "an array of \(what)", found: v.serialized))
        }
        return elements
    }
}
