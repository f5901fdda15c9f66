import Foundation
import Tensors

/// Builds a safetensors file from named tensors.
///
/// The output is deterministic: tensors are laid out in sorted name order with contiguous offsets
/// starting at 0, `__metadata__` (if any) comes first with sorted keys, and the header is padded
/// with spaces so the data buffer starts at a multiple of 8 bytes.
///
/// ```swift
/// var writer = SafetensorsWriter(metadata: ["format": "pt"])
/// try writer.add(weight, named: "proj.weight")
/// try writer.write(to: url)
/// ```
public struct SafetensorsWriter: Sendable {
    private struct Entry: Sendable {
        let dtype: SafetensorsDType
        let shape: [Int]
        let bytes: [UInt8]
    }

    /// String metadata stored under `__metadata__` (omitted when empty).
    public var metadata: [String: String]
    private var entries: [String: Entry] = [:]

    /// Creates an empty writer.
    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// The names added so far, sorted (the order they will be written in).
    public var names: [String] { entries.keys.sorted() }

    /// Adds a Float32 tensor, stored as F32.
    /// - Throws: ``SafetensorsError/invalidWriterInput(tensor:reason:)`` for a reserved or repeated name.
    public mutating func add(_ tensor: Tensor, named name: String) throws(SafetensorsError) {
        var bytes = [UInt8](repeating: 0, count: tensor.count * 4)
        tensor.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { dst in
                for (i, x) in src.enumerated() {
                    dst.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                }
            }
        }
        try addRaw(named: name, dtype: .f32, shape: tensor.shape, bytes: bytes)
    }

    /// Adds a tensor given as already-encoded little-endian bytes of any dtype (useful to build
    /// F16, BF16, integer or BOOL files).
    /// - Throws: ``SafetensorsError/invalidWriterInput(tensor:reason:)`` when the name is reserved or
    ///   repeated, a dimension is negative, or `bytes.count` differs from dtype size × element count.
    public mutating func addRaw(
        named name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]
    ) throws(SafetensorsError) {
        try Self.checkName(name, isNew: entries[name] == nil)
        var elements = 1
        for d in shape {
            guard d >= 0 else { throw .invalidWriterInput(tensor: name, reason: "shape \(shape) has a negative dimension") }
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            guard !o else { throw .invalidWriterInput(tensor: name, reason: "the element count of shape \(shape) overflows") }
            elements = p
        }
        let (bits, o) = elements.multipliedReportingOverflow(by: dtype.bitSize)
        guard !o, bits % 8 == 0 else {
            throw .invalidWriterInput(tensor: name, reason: "shape \(shape) of \(dtype.rawValue) is not a whole number of bytes")
        }
        guard bits / 8 == bytes.count else {
            throw .invalidWriterInput(
                tensor: name,
                reason: "\(dtype.rawValue) with shape \(shape) needs \(bits / 8) bytes but \(bytes.count) were given")
        }
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Throws ``SafetensorsError/invalidWriterInput(tensor:reason:)`` for the reserved name `__metadata__`
    /// or a name already added (`isNew` false).
    static func checkName(_ name: String, isNew: Bool) throws(SafetensorsError) {
        guard name != SafetensorsHeader.metadataKey else {
            throw .invalidWriterInput(tensor: name, reason: "the name __metadata__ is reserved for metadata")
        }
        guard isNew else {
            throw .invalidWriterInput(tensor: name, reason: "a tensor with this name was already added")
        }
    }

    /// The complete file contents.
    public func serialized() -> Data {
        let order = names
        let header = Self.header(metadata: metadata, entries: order.compactMap { name in
            entries[name].map { (name, $0.dtype, $0.shape, $0.bytes.count) }
        })
        let total = order.reduce(0) { $0 + (entries[$1]?.bytes.count ?? 0) }
        var out = Data(capacity: header.count + total)
        out.append(contentsOf: header)
        for name in order { if let e = entries[name] { out.append(contentsOf: e.bytes) } }
        return out
    }

    /// The 8-byte length and the header (`__metadata__` first with sorted keys, then `entries` in the
    /// given order with contiguous offsets from 0), padded with spaces to a multiple of 8 bytes.
    static func header(metadata: [String: String],
                       entries: [(name: String, dtype: SafetensorsDType, shape: [Int], byteCount: Int)]) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += quoted(SafetensorsHeader.metadataKey) + ":{"
            json += metadata.keys.sorted().map { quoted($0) + ":" + quoted(metadata[$0] ?? "") }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for e in entries {
            if !first { json += "," }
            first = false
            let shape = e.shape.map(String.init).joined(separator: ",")
            json += quoted(e.name)
                + ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.byteCount)]}"
            offset += e.byteCount
        }
        json += "}"
        var header = Array(json.utf8)
        let padded = (header.count + 7) / 8 * 8
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - header.count))
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        return out + header
    }

    /// Writes the file atomically to `url`.
    public func write(to url: URL) throws(SafetensorsError) {
        do {
            try serialized().write(to: url, options: .atomic)
        } catch {
            throw .fileUnwritable(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }

    /// Serialises Float32 tensors (stored as F32) and optional metadata.
    public static func serialize(
        _ tensors: [String: Tensor], metadata: [String: String] = [:]
    ) throws(SafetensorsError) -> Data {
        var writer = SafetensorsWriter(metadata: metadata)
        for name in tensors.keys.sorted() {
            if let t = tensors[name] { try writer.add(t, named: name) }
        }
        return writer.serialized()
    }

    /// Writes Float32 tensors (stored as F32) and optional metadata to `url`.
    public static func write(
        _ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL
    ) throws(SafetensorsError) {
        var writer = SafetensorsWriter(metadata: metadata)
        for name in tensors.keys.sorted() {
            if let t = tensors[name] { try writer.add(t, named: name) }
        }
        try writer.write(to: url)
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, the rest raw UTF-8.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
