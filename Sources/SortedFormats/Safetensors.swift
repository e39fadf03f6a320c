// Safetensors: reads and writes the format HF uses for weights (an 8-byte little-endian header
// length, a JSON header of dtype/shape/offsets, then raw little-endian tensor bytes); model
// files and `sortedtrain prepare`'s datasets are both safetensors.
import Foundation
import SortedKit

public struct SafetensorsFile {
    public enum DType: String {
        case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32"
        public var size: Int {
            switch self {
            case .f64, .i64: return 8
            case .f32, .i32: return 4
            case .f16, .bf16: return 2
            }
        }
    }

    public struct Entry {
        public let dtype: DType
        public let shape: [Int]
        public let byteRange: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let metadata: [String: String]
    public let entries: [String: Entry]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        path = url.path
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw FormatError(file: url.path, "cannot be read: \(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw FormatError(file: path, "is too short to be a safetensors file") }
        let storedLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard storedLength > 0, storedLength <= UInt64(data.count - 8) else {
            throw FormatError(file: path, "header length \(storedLength) does not fit the file (\(data.count) bytes); the file is truncated or not safetensors")
        }
        dataStart = 8 + Int(storedLength)
        let header: JSONValue
        do { header = try JSONParser.parse(data.subdata(in: 8..<dataStart)) } catch {
            throw FormatError(file: path, "header is not valid JSON")
        }
        guard let json = header.object else { throw FormatError(file: path, "header is not a JSON object") }
        var parsed: [String: Entry] = [:]
        var meta: [String: String] = [:]
        let payload = data.count - dataStart
        for (name, value) in json {
            if name == "__metadata__" {
                meta = value.object?.compactMapValues(\.string) ?? [:]
                continue
            }
            func integers(_ key: String) -> [Int]? {
                guard let items = value[key]?.array, case let ints = items.compactMap(\.int), ints.count == items.count else { return nil }
                return ints
            }
            guard let dtypeName = value["dtype"]?.string, let shape = integers("shape"), let offsets = integers("data_offsets"),
                  offsets.count == 2 else {
                throw FormatError(file: path, "tensor '\(name)' has a malformed header entry")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw FormatError(file: path, "tensor '\(name)' has unsupported dtype \(dtypeName)")
            }
            // Every number here is untrusted: sizes are multiplied with overflow checks and the
            // range is formed only once it is known to be ordered and inside the payload.
            guard let bytes = MemoryBudget.product(shape + [dtype.size]),
                  offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload, offsets[1] - offsets[0] == bytes else {
                throw FormatError(file: path, "tensor '\(name)' (shape \(shape), \(dtypeName), bytes \(offsets[0])..<\(offsets[1])) lies outside the file or has the wrong byte size; the file is truncated or corrupt")
            }
            parsed[name] = Entry(dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1])
        }
        // The format requires the tensors to tile the payload exactly: a gap or an overlap
        // means a damaged header (or a header length that is off, shifting every tensor).
        var end = 0
        for (name, entry) in parsed.sorted(by: { ($0.value.byteRange.lowerBound, $0.value.byteRange.upperBound) < ($1.value.byteRange.lowerBound, $1.value.byteRange.upperBound) }) {
            guard entry.byteRange.lowerBound == end else {
                throw FormatError(file: path, "tensor '\(name)' starts at byte \(entry.byteRange.lowerBound) of the data, where \(entry.byteRange.lowerBound < end ? "the previous tensor still lies (overlap)" : "a gap follows the previous tensor, which ends at \(end)"); the file is corrupt")
            }
            end = entry.byteRange.upperBound
        }
        guard end == payload else {
            throw FormatError(file: path, "its tensors cover \(end) bytes of data but the file holds \(payload) after the header; the header length or the file is wrong")
        }
        entries = parsed
        metadata = meta
    }

    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw FormatError(file: path, "has no tensor '\(name)'") }
        return e
    }

    /// The tensor converted to Float (from F32, F64, F16 or BF16).
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        return data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.byteRange.lowerBound
            return (0..<e.count).map { i -> Float in
                switch e.dtype {
                case .f32: return Float(bitPattern: UInt32(littleEndian: (base + 4 * i).loadUnaligned(as: UInt32.self)))
                case .f64: return Float(Double(bitPattern: UInt64(littleEndian: (base + 8 * i).loadUnaligned(as: UInt64.self))))
                case .f16: return Float(Float16(bitPattern: UInt16(littleEndian: (base + 2 * i).loadUnaligned(as: UInt16.self))))
                case .bf16: return Float(bitPattern: UInt32(UInt16(littleEndian: (base + 2 * i).loadUnaligned(as: UInt16.self))) << 16)
                case .i64: return Float(Int64(littleEndian: (base + 8 * i).loadUnaligned(as: Int64.self)))
                case .i32: return Float(Int32(littleEndian: (base + 4 * i).loadUnaligned(as: Int32.self)))
                }
            }
        }
    }

    /// The tensor as Double (F64 exactly; other float types widened).
    public func doubles(_ name: String) throws -> [Double] {
        let e = try entry(name)
        if e.dtype != .f64 { return try floats(name).map(Double.init) }
        return data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.byteRange.lowerBound
            return (0..<e.count).map { Double(bitPattern: UInt64(littleEndian: (base + 8 * $0).loadUnaligned(as: UInt64.self))) }
        }
    }

    /// An integer tensor (I64 or I32).
    public func integers(_ name: String) throws -> [Int64] {
        let e = try entry(name)
        return try data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.byteRange.lowerBound
            switch e.dtype {
            case .i64: return (0..<e.count).map { Int64(littleEndian: (base + 8 * $0).loadUnaligned(as: Int64.self)) }
            case .i32: return (0..<e.count).map { Int64(Int32(littleEndian: (base + 4 * $0).loadUnaligned(as: Int32.self))) }
            default: throw FormatError(file: path, "tensor '\(name)' is \(e.dtype.rawValue), expected an integer type")
            }
        }
    }

    /// An I32 tensor as Int32 (no widening: token arrays can be large).
    public func int32s(_ name: String) throws -> [Int32] {
        let e = try entry(name)
        guard e.dtype == .i32 else { throw FormatError(file: path, "tensor '\(name)' is \(e.dtype.rawValue), expected I32") }
        return data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.byteRange.lowerBound
            return (0..<e.count).map { Int32(littleEndian: (base + 4 * $0).loadUnaligned(as: Int32.self)) }
        }
    }
}

/// Writes tensors as a safetensors file: header padded with spaces to 8 bytes, tensors in the
/// given order, little-endian as the platforms sortedtrain runs on store them.
public enum SafetensorsWriter {
    public struct Tensor {
        public let name: String
        public let dtype: SafetensorsFile.DType
        public let shape: [Int]
        public let bytes: UnsafeRawBufferPointer

        /// A float32 tensor.
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
            self.init(name: name, dtype: .f32, shape: shape, bytes: UnsafeRawBufferPointer(values))
        }

        /// A tensor of `dtype` whose little-endian bytes are `bytes`.
        public init(name: String, dtype: SafetensorsFile.DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
            precondition(bytes.count == shape.reduce(1, *) * dtype.size, "tensor '\(name)': \(bytes.count) bytes for shape \(shape) of \(dtype.rawValue)")
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    /// How the JSON header is spelled; both are the same header to any reader, and each is
    /// kept byte for byte so the same inputs give the same files.
    public enum HeaderStyle {
        /// `__metadata__` first, then the tensors in data order, keys dtype/shape/data_offsets,
        /// no spaces: model.safetensors as `transformers` loads it.
        case compact
        /// Every object's keys sorted, items separated by ", " and ": ": the files
        /// `sortedtrain prepare` writes.
        case sortedKeys
    }

    public static func write(_ tensors: [Tensor], metadata: [String: String] = ["format": "pt"], style: HeaderStyle = .compact,
                             to url: URL) throws {
        var header = Array(self.header(tensors, metadata: metadata, style: style).utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        let payload = tensors.reduce(0) { $0 + $1.bytes.count }
        var data = Data(capacity: 8 + header.count + payload)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for tensor in tensors {
            if let base = tensor.bytes.baseAddress {
                data.append(base.assumingMemoryBound(to: UInt8.self), count: tensor.bytes.count)
            }
        }
        do { try data.write(to: url, options: .atomic) } catch {
            throw FormatError(file: url.path, "cannot be written: \(error.localizedDescription)")
        }
    }

    /// The JSON header before padding.
    static func header(_ tensors: [Tensor], metadata: [String: String], style: HeaderStyle) -> String {
        let (comma, colon) = style == .compact ? (",", ":") : (", ", ": ")
        func object(_ items: [(key: String, value: String)]) -> String {
            let ordered = style == .compact ? items : items.sorted { $0.key < $1.key }
            return "{" + ordered.map { jsonQuoted($0.key) + colon + $0.value }.joined(separator: comma) + "}"
        }
        func array(_ values: [Int]) -> String { "[" + values.map(String.init).joined(separator: comma) + "]" }
        let meta = object(metadata.keys.sorted().map { ($0, jsonQuoted(metadata[$0]!)) })
        var items: [(key: String, value: String)] = [("__metadata__", meta)]
        var offset = 0
        for tensor in tensors {
            let end = offset + tensor.bytes.count
            items.append((tensor.name, object([("dtype", jsonQuoted(tensor.dtype.rawValue)), ("shape", array(tensor.shape)),
                                               ("data_offsets", array([offset, end]))])))
            offset = end
        }
        return object(items)
    }
}
