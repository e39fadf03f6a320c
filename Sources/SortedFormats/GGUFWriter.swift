// GGUFWriter: writes llama.cpp's model format (GGUF v3, little-endian, per ggml's gguf.md):
// typed metadata key/values in insertion order, a tensor directory with dimensions in ggml
// order (innermost first), and tensor data in F32, F16 or Q8_0, each tensor's offset a
// multiple of general.alignment (32) with zero padding. The file is written atomically.
import Foundation
import SortedKit

public struct GGUFWriter {
    public static let alignment = 32

    /// Metadata in file order (general.alignment is always written first).
    public private(set) var metadata: [(key: String, value: GGUFFile.Value)] = []
    /// name, row-major shape (slowest first, as `GGUFFile.TensorInfo.shape`), type, encoded bytes.
    public private(set) var tensors: [(name: String, shape: [Int], type: GGUFFile.TensorType, bytes: [UInt8])] = []

    public init() {
        set("general.alignment", .uint32(UInt32(Self.alignment)))
    }

    /// Sets `key`, replacing an earlier value in place.
    public mutating func set(_ key: String, _ value: GGUFFile.Value) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    public mutating func removeValue(forKey key: String) { metadata.removeAll { $0.key == key } }

    /// Adds a tensor of `values` (row-major in `shape`, slowest first) encoded as `type`
    /// (F32, F16, Q8_0, Q4_0 or Q4_1; the block types need the innermost dimension to be a
    /// multiple of 32).
    public mutating func addTensor(_ name: String, shape: [Int], values: UnsafeBufferPointer<Float>, type: GGUFFile.TensorType) {
        precondition(!shape.isEmpty && shape.reduce(1, *) == values.count, "GGUFWriter: \(name) has \(values.count) values for shape \(shape)")
        let bytes: [UInt8]
        switch type {
        case .f32: bytes = Self.encodeF32(values)
        case .f16: bytes = Self.encodeF16(values)
        case .q8_0:
            precondition(shape.last! % 32 == 0, "GGUFWriter: Q8_0 rows of \(name) are \(shape.last!) long, not a multiple of 32")
            bytes = Self.encodeQ8_0(values)
        case .q4_0, .q4_1:
            precondition(shape.last! % 32 == 0, "GGUFWriter: \(type) rows of \(name) are \(shape.last!) long, not a multiple of 32")
            bytes = (type == .q4_0 ? WeightFormat.q4_0 : .q4_1).encodeBlocks(values, columns: shape.last!)
        default: preconditionFailure("GGUFWriter writes F32, F16, Q8_0, Q4_0 and Q4_1, not \(type)")
        }
        addTensor(name, shape: shape, type: type, bytes: bytes)
    }

    public mutating func addTensor(_ name: String, shape: [Int], values: [Float], type: GGUFFile.TensorType) {
        values.withUnsafeBufferPointer { addTensor(name, shape: shape, values: $0, type: type) }
    }

    /// Adds already-encoded bytes (any ggml type; the caller answers for the size).
    public mutating func addTensor(_ name: String, shape: [Int], type: GGUFFile.TensorType, bytes: [UInt8]) {
        precondition(!tensors.contains { $0.name == name }, "GGUFWriter: tensor \(name) added twice")
        tensors.append((name, shape, type, bytes))
    }

    public mutating func removeTensor(_ name: String) { tensors.removeAll { $0.name == name } }

    // MARK: Encodings

    public static func encodeF32(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 4 * values.count)
        out.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        return out
    }

    /// IEEE half precision, round to nearest even (as numpy's astype(float16)).
    public static func encodeF16(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 2 * values.count)
        out.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        }
        return out
    }

    /// ggml's Q8_0 (quantize_row_q8_0_ref): per block of 32, d = max|x| / 127 stored as f16,
    /// q = round(x / d) as int8 (round half away from zero), 34 bytes per block.
    public static func encodeQ8_0(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        precondition(values.count % 32 == 0, "Q8_0 needs a multiple of 32 values")
        let blocks = values.count / 32
        var out = [UInt8](repeating: 0, count: 34 * blocks)
        out.withUnsafeMutableBytes { raw in
            for b in 0..<blocks {
                let x = values.baseAddress! + 32 * b
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(x[j])) }
                let d = amax / 127
                let id: Float = d != 0 ? 1 / d : 0
                raw.storeBytes(of: Float16(d).bitPattern.littleEndian, toByteOffset: 34 * b, as: UInt16.self)
                for j in 0..<32 {
                    raw.storeBytes(of: Int8((x[j] * id).rounded(.toNearestOrAwayFromZero)), toByteOffset: 34 * b + 2 + j, as: Int8.self)
                }
            }
        }
        return out
    }

    // MARK: Output

    /// The whole file.
    public func data() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func value(_ v: GGUFFile.Value) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let x): string(x)
            case .array(let items):
                // An empty array has no element to take a type from; it is written as strings.
                u32(items.first.map(Self.typeID) ?? 8)
                u64(UInt64(items.count))
                items.forEach(value)
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float64(let x): u64(x.bitPattern)
            }
        }
        func pad() { out.append(contentsOf: [UInt8](repeating: 0, count: (Self.alignment - out.count % Self.alignment) % Self.alignment)) }

        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, v) in metadata { string(key); u32(Self.typeID(v)); value(v) }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }   // ggml order: ne[0] is the innermost
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += (t.bytes.count + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        pad()
        for t in tensors {
            out.append(contentsOf: t.bytes)
            pad()
        }
        return out
    }

    /// Writes the file to a temporary name beside `url`, then renames it into place.
    public func write(to url: URL) throws {
        do { try data().write(to: url, options: .atomic) } catch {
            throw FormatError(file: url.path, "cannot be written: \(error.localizedDescription)")
        }
    }

    /// The GGUF value type of a metadata value (gguf.md's gguf_metadata_value_type).
    static func typeID(_ v: GGUFFile.Value) -> UInt32 {
        switch v {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }
}
