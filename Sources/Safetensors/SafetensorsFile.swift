import Foundation
import Tensors

/// A validated safetensors file (or in-memory buffer) whose tensors can be listed and loaded.
///
/// Files are memory-mapped (`Data(contentsOf:options: .alwaysMapped)`), so opening a large checkpoint
/// reads only its header; tensor bytes are touched when a tensor is loaded. The whole header and
/// layout are validated on opening (see ``SafetensorsError``), so every tensor listed can be read.
///
/// ```swift
/// let file = try SafetensorsFile(contentsOf: url)
/// let w = try file.tensor(named: "proj_out.weight")   // Float32 Tensor, whatever the stored dtype
/// ```
public struct SafetensorsFile: Sendable {
    private let data: Data
    /// The file's bytes (mapped), for borrowing views that keep them alive.
    var mappedData: Data { data }
    private let header: SafetensorsHeader
    private let indexByName: [String: Int]

    /// Opens and validates the file at `url`, memory-mapping it.
    public init(contentsOf url: URL) throws(SafetensorsError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw .fileUnreadable(path: url.path, reason: "it is a directory, not a file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw .fileUnreadable(path: url.path, reason: Self.reason(for: error))
        }
        try self.init(data: data)
    }

    /// Opens and validates the file at `path`, memory-mapping it.
    public init(path: String) throws(SafetensorsError) {
        try self.init(contentsOf: URL(fileURLWithPath: path))
    }

    /// Validates an in-memory safetensors buffer. `data` may be a slice; it is not copied.
    public init(data: Data) throws(SafetensorsError) {
        let parsed = data.withUnsafeBytes { raw in
            Result { () throws(SafetensorsError) in try SafetensorsHeader.parse(raw) }
        }
        let header = try parsed.get()
        self.data = data
        self.header = header
        var index: [String: Int] = [:]
        for (i, info) in header.tensors.enumerated() { index[info.name] = i }
        self.indexByName = index
    }

    /// Validates an in-memory safetensors buffer given as bytes.
    public init(bytes: [UInt8]) throws(SafetensorsError) {
        try self.init(data: Data(bytes))
    }

    /// Every tensor, in the order its key appears in the header.
    public var tensors: [SafetensorsTensorInfo] { header.tensors }

    /// Tensor names in header order.
    public var names: [String] { header.tensors.map(\.name) }

    /// Tensor names sorted (by Unicode scalar order, which for ASCII names is byte order).
    public var sortedNames: [String] { names.sorted() }

    /// The `__metadata__` string map (empty when the file has none).
    public var metadata: [String: String] { header.metadata }

    /// The header length N from the 8-byte prefix.
    public var headerLength: Int { header.headerLength }

    /// The file offset of the data buffer (8 + N); `data_offsets` are relative to it.
    public var dataStart: Int { 8 + header.headerLength }

    /// The total size of the file in bytes.
    public var fileSize: Int { data.count }

    /// Whether a tensor of that name exists.
    public func contains(_ name: String) -> Bool { indexByName[name] != nil }

    /// The header record of the named tensor.
    public func info(named name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        guard let i = indexByName[name] else { throw .tensorNotFound(name) }
        return header.tensors[i]
    }

    /// The named tensor's byte range as absolute file offsets.
    public func fileByteRange(named name: String) throws(SafetensorsError) -> Range<Int> {
        let r = try info(named: name).dataOffsets
        return (dataStart + r.lowerBound)..<(dataStart + r.upperBound)
    }

    /// A copy of the named tensor's stored bytes (little-endian, row-major), whatever its dtype.
    public func rawBytes(named name: String) throws(SafetensorsError) -> [UInt8] {
        let range = try fileByteRange(named: name)
        return data.withUnsafeBytes { raw in Array(raw[range]) }
    }

    /// Loads the named tensor as a Float32 `Tensor` with the stored shape.
    ///
    /// F32 is copied; F16, BF16 and BOOL convert exactly; F64, I64 and I32 round to the nearest Float32.
    /// - Throws: ``SafetensorsError/tensorNotFound(_:)``, or ``SafetensorsError/unsupportedDType(tensor:dtype:)``
    ///   for dtypes that have no Float32 conversion (U8, F8_*, C64, ...).
    public func tensor(named name: String) throws(SafetensorsError) -> Tensor {
        let info = try info(named: name)
        guard info.dtype.isConvertibleToFloat else {
            throw .unsupportedDType(tensor: name, dtype: info.dtype.rawValue)
        }
        let start = dataStart + info.dataOffsets.lowerBound
        let end = dataStart + info.dataOffsets.upperBound
        return data.withUnsafeBytes { raw in
            let source = UnsafeRawBufferPointer(rebasing: raw[start..<end])
            return Tensor(uninitializedShape: info.shape) { destination in
                ScalarDecoding.decode(source, dtype: info.dtype, count: info.elementCount, into: destination)
            }
        }
    }

    /// Loads every tensor as Float32, keyed by name.
    /// - Throws: the first error of ``tensor(named:)`` (in header order).
    public func loadAll() throws(SafetensorsError) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for info in header.tensors { result[info.name] = try tensor(named: info.name) }
        return result
    }

    /// A one-line reason for a Foundation file error, without the noise of its full description.
    private static func reason(for error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        if ns.domain == NSCocoaErrorDomain {
            switch ns.code {
            case NSFileReadNoSuchFileError: return "no such file"
            case NSFileReadNoPermissionError: return "permission denied"
            default: break
            }
        }
        return ns.localizedDescription
    }
}

/// Keeps mapped file bytes alive for the ``WeightBuffer``s that borrow them.
private final class MappedData: @unchecked Sendable {
    let data: Data
    init(_ data: Data) { self.data = data }
}

extension SafetensorsFile {
    /// The named tensor's stored bytes, borrowed from the file's memory mapping (no copy; the mapping
    /// stays open while the buffer lives). Bytes at an odd address are copied into an aligned
    /// allocation instead (16-bit weights are read as 16-bit words).
    public func storedBuffer(named name: String) throws(SafetensorsError) -> WeightBuffer {
        let range = try fileByteRange(named: name)
        let alignment = 2  // the widest element a borrowed buffer is read as (16-bit weights)
        let owner = MappedData(mappedData)
        let base: UnsafeRawPointer = owner.data.withUnsafeBytes { raw in UnsafeRawPointer(raw.baseAddress!) }
        let start = base + range.lowerBound
        if Int(bitPattern: start) % alignment == 0 {
            return WeightBuffer(borrowing: start, byteCount: range.count, owner: owner)
        }
        let count = range.count
        return WeightBuffer(allocating: count) { (p: UnsafeMutableRawPointer) in p.copyMemory(from: start, byteCount: count) }
    }
}
