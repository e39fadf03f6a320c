// HDF5File: the one wrapper over the HDF5 C library. Float and integer datasets, each with
// its XXH64 digest as the attribute `xxh64`, verified on every read; groups created on
// demand; string attributes. Datasets are contiguous: HDF5's own Fletcher32 filter needs
// chunking and halved checkpoint throughput here. HDF5's automatic error printing is
// switched off; failures become FormatError values.
import CHDF5
import Foundation
import SortedFormats
import SortedKit

public final class HDF5File {
    public let path: String
    private let id: hid_t

    /// Before the library's first use: no error stack printed (errors are thrown, with the
    /// file), and no shutdown at exit — after a write that failed (a full disk), HDF5's atexit
    /// cleanup flushes the broken file again and crashes the process that already reported it.
    private static let silenceErrors: Void = {
        H5dont_atexit()
        H5Eset_auto2(0, nil, nil)
    }()

    /// Creates (or truncates) a file.
    public init(creating path: String) throws {
        _ = Self.silenceErrors
        self.path = path
        id = H5Fcreate(path, chdf5_f_acc_trunc(), chdf5_p_default(), chdf5_p_default())
        if id < 0 { throw FormatError(file: path, "cannot be created (check the folder exists and is writable)") }
    }

    /// Opens an existing file, read-only unless `writable`.
    public init(opening path: String, writable: Bool = false) throws {
        _ = Self.silenceErrors
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw FormatError(file: path, "does not exist") }
        id = H5Fopen(path, writable ? chdf5_f_acc_rdwr() : chdf5_f_acc_rdonly(), chdf5_p_default())
        if id < 0 { throw FormatError(file: path, "is not a readable HDF5 file (truncated or corrupt?)") }
    }

    deinit { H5Fclose(id) }

    /// Writes everything buffered to disk.
    public func flush() throws {
        if H5Fflush(id, H5F_SCOPE_GLOBAL) < 0 { throw FormatError(file: path, "flush failed") }
    }

    /// A float32 dataset at `name` (intermediate groups created) with its digest.
    public func write(_ name: String, floats: UnsafePointer<Float>, shape: [Int]) throws {
        try write(name, type: chdf5_native_float(), data: UnsafeRawPointer(floats), shape: shape, elementSize: 4)
    }

    public func write(_ name: String, floats: [Float], shape: [Int]) throws {
        try floats.withUnsafeBufferPointer { try write(name, floats: $0.baseAddress!, shape: shape) }
    }

    public func write(_ name: String, int64s: [Int64], shape: [Int]) throws {
        try int64s.withUnsafeBufferPointer {
            try write(name, type: chdf5_native_int64(), data: UnsafeRawPointer($0.baseAddress!), shape: shape, elementSize: 8)
        }
    }

    private func write(_ name: String, type: hid_t, data: UnsafeRawPointer, shape: [Int], elementSize: Int) throws {
        let count = shape.reduce(1, *)
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        defer { H5Sclose(space) }
        let lcpl = H5Pcreate(chdf5_p_link_create())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let dataset = H5Dcreate2(id, name, type, space, lcpl, chdf5_p_default(), chdf5_p_default())
        if dataset < 0 { throw FormatError(file: path, "cannot create dataset '\(name)' (does it exist already?)") }
        defer { H5Dclose(dataset) }
        if count > 0, H5Dwrite(dataset, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), data) < 0 {
            throw FormatError(file: path, "writing dataset '\(name)' failed (disk full?)")
        }
        var digest = XXH64.digest(data, count: count * elementSize)
        let scalar = H5Screate(H5S_SCALAR)
        defer { H5Sclose(scalar) }
        let attribute = H5Acreate2(dataset, Self.digestAttribute, chdf5_native_uint64(), scalar, chdf5_p_default(), chdf5_p_default())
        defer { H5Aclose(attribute) }
        if attribute < 0 || H5Awrite(attribute, chdf5_native_uint64(), &digest) < 0 {
            throw FormatError(file: path, "cannot store the checksum of dataset '\(name)'")
        }
    }

    static let digestAttribute = "xxh64"

    /// Compares the bytes just read with the digest stored at write time; returns it.
    @discardableResult
    private func verify(_ dataset: hid_t, _ name: String, _ data: UnsafeRawPointer, bytes: Int) throws -> UInt64 {
        guard H5Aexists(dataset, Self.digestAttribute) > 0 else {
            throw FormatError(file: path, "dataset '\(name)' has no checksum (attribute \(Self.digestAttribute)); it was not written by sortedtrain")
        }
        let attribute = H5Aopen(dataset, Self.digestAttribute, chdf5_p_default())
        defer { H5Aclose(attribute) }
        var stored: UInt64 = 0
        guard attribute >= 0, H5Aread(attribute, chdf5_native_uint64(), &stored) >= 0 else {
            throw FormatError(file: path, "dataset '\(name)': its checksum cannot be read; the file is damaged")
        }
        if XXH64.digest(data, count: bytes) != stored {
            throw FormatError(file: path, "dataset '\(name)': checksum mismatch, the stored values are damaged")
        }
        return stored
    }

    public func exists(_ name: String) -> Bool {
        // Check each path component: H5Lexists fails on a missing intermediate group.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if H5Lexists(id, prefix, chdf5_p_default()) <= 0 { return false }
        }
        return true
    }

    public func shape(of name: String) throws -> [Int] {
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.map { Int(clamping: $0) }
    }

    /// The dataset's element count; a damaged file may declare dimensions whose product overflows.
    private func elementCount(of name: String) throws -> Int {
        guard let count = MemoryBudget.product(try shape(of: name)) else {
            throw FormatError(file: path, "dataset '\(name)' declares more elements than can be addressed; the file is damaged")
        }
        return count
    }

    /// Reads a float dataset into `into` (which holds exactly its element count) and returns
    /// its verified digest. A checksum mismatch or a short file is an error naming the dataset.
    @discardableResult
    public func read(_ name: String, into: UnsafeMutablePointer<Float>, count: Int) throws -> UInt64 {
        let found = try elementCount(of: name)
        guard found == count else {
            throw FormatError(file: path, "dataset '\(name)' holds \(found) values, expected \(count)")
        }
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        if count > 0, H5Dread(dataset, chdf5_native_float(), chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), into) < 0 {
            throw FormatError(file: path, "dataset '\(name)' cannot be read: the file (or the shard it links to) is truncated or damaged")
        }
        return try verify(dataset, name, into, bytes: count * 4)
    }

    public func readFloats(_ name: String) throws -> [Float] {
        let count = try elementCount(of: name)
        var values = [Float](repeating: 0, count: count)
        _ = try values.withUnsafeMutableBufferPointer { try read(name, into: $0.baseAddress!, count: count) }
        return values
    }

    public func readInt64s(_ name: String) throws -> [Int64] {
        let count = try elementCount(of: name)
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        var values = [Int64](repeating: 0, count: count)
        if count > 0, H5Dread(dataset, chdf5_native_int64(), chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &values) < 0 {
            throw FormatError(file: path, "dataset '\(name)' cannot be read: the file is truncated or damaged")
        }
        _ = try values.withUnsafeBytes { try verify(dataset, name, $0.baseAddress!, bytes: $0.count) }
        return values
    }

    private func openDataset(_ name: String) throws -> hid_t {
        guard exists(name) else { throw FormatError(file: path, "has no dataset '\(name)'") }
        let dataset = H5Dopen2(id, name, chdf5_p_default())
        if dataset < 0 {
            throw FormatError(file: path, "dataset '\(name)' cannot be opened: the file (or the shard it links to) is damaged or truncated")
        }
        return dataset
    }

    /// An external link at `name` (groups created) to dataset `object` in the file `file`,
    /// given relative to this file's folder so the pair can be moved together.
    public func linkExternal(_ name: String, file: String, object: String) throws {
        let lcpl = H5Pcreate(chdf5_p_link_create())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        if H5Lcreate_external(file, object, id, name, lcpl, chdf5_p_default()) < 0 {
            throw FormatError(file: path, "cannot create the external link '\(name)' → \(file):\(object)")
        }
    }

    /// A variable-length UTF-8 string attribute on the root group.
    public func setAttribute(_ name: String, string value: String) throws {
        let type = H5Tcopy(chdf5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, chdf5_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        if H5Aexists(id, name) > 0 { H5Adelete(id, name) }
        let attribute = H5Acreate2(id, name, type, space, chdf5_p_default(), chdf5_p_default())
        if attribute < 0 { throw FormatError(file: path, "cannot create attribute '\(name)'") }
        defer { H5Aclose(attribute) }
        let status = value.withCString { cString -> herr_t in
            var pointer: UnsafePointer<CChar>? = cString
            return H5Awrite(attribute, type, &pointer)
        }
        if status < 0 { throw FormatError(file: path, "cannot write attribute '\(name)'") }
    }

    /// Removes a root attribute if present.
    public func removeAttribute(_ name: String) {
        if H5Aexists(id, name) > 0 { H5Adelete(id, name) }
    }

    public func attribute(_ name: String) throws -> String {
        guard H5Aexists(id, name) > 0 else { throw FormatError(file: path, "has no attribute '\(name)'") }
        let attribute = H5Aopen(id, name, chdf5_p_default())
        defer { H5Aclose(attribute) }
        let type = H5Tcopy(chdf5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, chdf5_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        var pointer: UnsafeMutablePointer<CChar>? = nil
        if H5Aread(attribute, type, &pointer) < 0 || pointer == nil {
            throw FormatError(file: path, "attribute '\(name)' is not a readable string")
        }
        defer { free(pointer) }
        return String(cString: pointer!)
    }
}
