import Foundation
import Tensors

/// How int8 weight-only matrices are stored in a safetensors file written by this package:
/// the weight under its own name as `I8` `[out, in]`, its scales beside it as `F32`
/// `[out, ⌈in / group⌉]` under ``scalesSuffix`` appended to that name, and the group size in the
/// metadata under ``groupSizeKey``. Every other tensor keeps its float dtype.
public enum Int8WeightFormat {
    /// Appended to a weight's name to name its scales (`proj.weight` → `proj.weight.scales`).
    public static let scalesSuffix = ".scales"
    /// The metadata key holding the group size (a decimal integer).
    public static let groupSizeKey = "teacache.int8_group_size"
}

/// A store of named tensors a weight matrix can be read from: one file or a sharded checkpoint.
public protocol SafetensorsTensorSource {
    /// The header record of the named tensor.
    func info(named name: String) throws(SafetensorsError) -> SafetensorsTensorInfo
    /// The named tensor as Float32.
    func tensor(named name: String) throws(SafetensorsError) -> Tensor
    /// The named tensor's stored bytes (borrowed where possible).
    func storedBuffer(named name: String) throws(SafetensorsError) -> WeightBuffer
    /// Whether a tensor of that name is stored.
    func contains(_ name: String) -> Bool
    /// A metadata value of the file holding `tensor` (nil when absent).
    func metadataValue(_ key: String, forTensor tensor: String) -> String?
}

extension SafetensorsFile: SafetensorsTensorSource {
    public func metadataValue(_ key: String, forTensor tensor: String) -> String? { metadata[key] }
}

extension ShardedSafetensors: SafetensorsTensorSource {
    public func storedBuffer(named name: String) throws(SafetensorsError) -> WeightBuffer {
        try shardFile(for: name).storedBuffer(named: name)
    }

    public func metadataValue(_ key: String, forTensor tensor: String) -> String? {
        (try? shardFile(for: tensor))?.metadata[key]  // no shard: the tensor itself is reported missing by the caller
    }
}

extension SafetensorsTensorSource {
    /// Whether `name` is stored as an int8 weight-only matrix (an `I8` tensor with its scales beside it).
    public func isInt8Matrix(_ name: String) -> Bool {
        guard let record = try? self.info(named: name) else { return false }  // absent: not int8 (callers report absence)
        return record.dtype == .i8 && contains(name + Int8WeightFormat.scalesSuffix)
    }

    /// The stored names that are the scales of an int8 matrix (to leave out of "unexpected tensor" checks).
    public func isInt8Scales(_ name: String) -> Bool {
        guard name.hasSuffix(Int8WeightFormat.scalesSuffix) else { return false }
        return isInt8Matrix(String(name.dropLast(Int8WeightFormat.scalesSuffix.count)))
    }

    /// The named 2-D tensor as a `WeightMatrix` in `precision`.
    ///
    /// A BF16 (F16) tensor read as `.bfloat16` (`.float16`) and an int8 matrix read as `.int8` (same
    /// group size) are used in place from the mapping; anything else is converted (int8 at
    /// `groupSize`).
    /// - Throws: ``SafetensorsError/tensorNotFound(_:)``, ``SafetensorsError/unsupportedDType(tensor:dtype:)``,
    ///   or ``SafetensorsError/invalidTensorEntry(tensor:reason:)`` when the tensor is not 2-D or an
    ///   int8 matrix's scales or group size are inconsistent.
    public func weightMatrix(named name: String, precision: WeightPrecision,
                             groupSize: Int = WeightMatrix.defaultGroupSize) throws(SafetensorsError) -> WeightMatrix {
        let record = try self.info(named: name)
        guard record.shape.count == 2 else {
            throw .invalidTensorEntry(tensor: name, reason: "a weight matrix must be 2-D, the stored shape is \(record.shape)")
        }
        let rows = record.shape[0], columns = record.shape[1]
        switch (record.dtype, precision) {
        case (.bf16, .bfloat16), (.f16, .float16):
            let buffer = try storedBuffer(named: name)
            return try matrixOrEntryError(name) { () throws(TensorError) in
                try WeightMatrix(halfWords: buffer, precision: precision, rows: rows, columns: columns)
            }
        case (.i8, _) where isInt8Matrix(name):
            // `converted` returns the stored matrix itself when precision and group size already match.
            let stored = try int8Matrix(named: name, rows: rows, columns: columns)
            return try matrixOrEntryError(name) { () throws(TensorError) in try stored.converted(to: precision, groupSize: groupSize) }
        default:
            let t = try tensor(named: name)
            return try matrixOrEntryError(name) { () throws(TensorError) in
                try WeightMatrix.make(t, precision: precision, groupSize: groupSize)
            }
        }
    }

    /// Runs `body`, reporting a ``TensorError`` as an invalid entry of tensor `name`.
    private func matrixOrEntryError(_ name: String, _ body: () throws(TensorError) -> WeightMatrix) throws(SafetensorsError) -> WeightMatrix {
        do { return try body() } catch { throw .invalidTensorEntry(tensor: name, reason: "\(error)") }
    }

    private func int8Matrix(named name: String, rows: Int, columns: Int) throws(SafetensorsError) -> WeightMatrix {
        let text = metadataValue(Int8WeightFormat.groupSizeKey, forTensor: name)
        guard let text, let group = Int(text), group >= 1 else {
            throw .invalidTensorEntry(tensor: name, reason: "int8 weights need the metadata \(Int8WeightFormat.groupSizeKey) (a positive integer), found \(text ?? "none")")
        }
        let scales = try tensor(named: name + Int8WeightFormat.scalesSuffix)
        let values = try storedBuffer(named: name)
        return try matrixOrEntryError(name) { () throws(TensorError) in
            try WeightMatrix(int8: values, scales: scales, groupSize: group, rows: rows, columns: columns)
        }
    }
}
