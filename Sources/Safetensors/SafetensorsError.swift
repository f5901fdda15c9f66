/// Everything that can go wrong while reading, validating, converting or writing a safetensors file.
///
/// Each case names the offending tensor (where there is one) and the rule that was broken, so the
/// message says what to fix. The validation cases mirror the checks of the reference implementation
/// (huggingface/safetensors `tensor.rs`); a few stricter checks (duplicate names, strict integers,
/// a flat `__metadata__`) are added because Foundation's JSON parsers would silently accept them.
public enum SafetensorsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened or read (missing file, permissions, a directory, ...).
    case fileUnreadable(path: String, reason: String)
    /// The file could not be written.
    case fileUnwritable(path: String, reason: String)
    /// The buffer is shorter than the 8-byte header-length prefix.
    case headerTooSmall(fileSize: Int)
    /// The header length prefix exceeds the 100 MB cap of the reference implementation.
    case headerTooLarge(headerLength: UInt64)
    /// `8 + headerLength` runs past the end of the file.
    case invalidHeaderLength(headerLength: UInt64, fileSize: Int)
    /// The header bytes are not valid UTF-8.
    case invalidHeaderUTF8
    /// The header does not begin with `{`.
    case invalidHeaderStart(firstByte: UInt8?)
    /// The header is not well-formed JSON (or nests deeper than the parser allows).
    case invalidHeaderJSON(offset: Int, reason: String)
    /// The same tensor name appears more than once in the header.
    case duplicateTensorName(String)
    /// A tensor entry is not an object, lacks a field, or has a field of the wrong JSON type.
    case invalidTensorEntry(tensor: String, reason: String)
    /// The `dtype` string is not one of the names the format defines.
    case unknownDType(tensor: String, dtype: String)
    /// A `shape` entry is not a non-negative integer.
    case invalidShape(tensor: String, reason: String)
    /// `data_offsets` is not exactly two non-negative integers with begin <= end.
    case invalidDataOffsets(tensor: String, reason: String)
    /// The element count or bit count of a tensor overflows.
    case validationOverflow(tensor: String)
    /// The tensor's bit count is not a whole number of bytes (sub-byte dtypes only).
    case misalignedSlice(tensor: String)
    /// dtype size × element count differs from the tensor's byte range.
    case tensorInvalidInfo(tensor: String, dtype: String, shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// Sorted by offset, the tensor does not start where the previous one ended (a gap or an overlap).
    case invalidOffset(tensor: String, expectedBegin: Int, actualBegin: Int)
    /// The tensors do not cover the data buffer exactly (missing or trailing bytes).
    case metadataIncompleteBuffer(expectedFileSize: Int, actualFileSize: Int)
    /// `__metadata__` is not a flat string→string object.
    case invalidMetadata(reason: String)
    /// No tensor of that name exists in the file.
    case tensorNotFound(String)
    /// The tensor's dtype is known but cannot be converted to Float32.
    case unsupportedDType(tensor: String, dtype: String)
    /// A sharded-checkpoint index (`*.safetensors.index.json`) is malformed.
    case invalidIndex(path: String, reason: String)
    /// A shard named by a sharded-checkpoint index does not exist next to the index.
    case missingShard(index: String, shard: String, tensor: String)
    /// A shard named by an index exists but cannot be opened or validated; `error` says why.
    indirect case invalidShard(path: String, error: SafetensorsError)
    /// The index assigns a tensor to a shard that does not store it.
    case tensorMissingFromShard(tensor: String, shard: String, index: String)
    /// The same tensor name is stored in more than one shard of a sharded checkpoint.
    case duplicateTensorAcrossShards(tensor: String, shards: [String])
    /// The writer was given a tensor it cannot store (bad name, byte count mismatch, ...).
    case invalidWriterInput(tensor: String, reason: String)

    /// A one-line explanation naming the tensor (if any) and the broken rule.
    public var description: String {
        switch self {
        case let .fileUnreadable(path, reason):
            return "cannot read safetensors file '\(path)': \(reason)"
        case let .fileUnwritable(path, reason):
            return "cannot write safetensors file '\(path)': \(reason)"
        case let .headerTooSmall(fileSize):
            return "file is \(fileSize) bytes, shorter than the 8-byte header-length prefix; not a safetensors file"
        case let .headerTooLarge(headerLength):
            return "header length \(headerLength) exceeds the 100000000-byte limit; the file is corrupt or hostile"
        case let .invalidHeaderLength(headerLength, fileSize):
            return "header length \(headerLength) plus the 8-byte prefix runs past the end of the \(fileSize)-byte file; the file is truncated or corrupt"
        case .invalidHeaderUTF8:
            return "the header is not valid UTF-8"
        case let .invalidHeaderStart(firstByte):
            let shown = firstByte.map { "byte 0x" + String($0, radix: 16) } ?? "an empty header"
            return "the header must be a JSON object starting with '{' but starts with \(shown)"
        case let .invalidHeaderJSON(offset, reason):
            return "the header is not valid JSON at byte \(offset) of the header: \(reason)"
        case let .duplicateTensorName(name):
            return "tensor '\(name)' appears more than once in the header; names must be unique"
        case let .invalidTensorEntry(tensor, reason):
            return "tensor '\(tensor)': \(reason)"
        case let .unknownDType(tensor, dtype):
            return "tensor '\(tensor)': unknown dtype '\(dtype)'"
        case let .invalidShape(tensor, reason):
            return "tensor '\(tensor)': invalid shape: \(reason)"
        case let .invalidDataOffsets(tensor, reason):
            return "tensor '\(tensor)': invalid data_offsets: \(reason)"
        case let .validationOverflow(tensor):
            return "tensor '\(tensor)': the element count or byte size of its shape overflows"
        case let .misalignedSlice(tensor):
            return "tensor '\(tensor)': its size in bits is not a whole number of bytes"
        case let .tensorInvalidInfo(tensor, dtype, shape, expected, actual):
            return "tensor '\(tensor)': dtype \(dtype) with shape \(shape) needs \(expected) bytes but data_offsets span \(actual) bytes"
        case let .invalidOffset(tensor, expectedBegin, actualBegin):
            let kind = actualBegin > expectedBegin ? "leaves a gap" : "overlaps the previous tensor"
            return "tensor '\(tensor)': data begins at \(actualBegin) but the previous tensor ends at \(expectedBegin); it \(kind) (tensors must tile the data buffer contiguously from 0)"
        case let .metadataIncompleteBuffer(expected, actual):
            return "the tensors cover a \(expected)-byte file but the file is \(actual) bytes; it is truncated or has trailing bytes"
        case let .invalidMetadata(reason):
            return "__metadata__ must be a flat object of string values: \(reason)"
        case let .tensorNotFound(name):
            return "no tensor named '\(name)' in the file"
        case let .unsupportedDType(tensor, dtype):
            return "tensor '\(tensor)': dtype \(dtype) cannot be converted to Float32 (supported: F32, F16, BF16, F64, I64, I32, BOOL)"
        case let .invalidIndex(path, reason):
            return "invalid safetensors index '\(path)': \(reason)"
        case let .missingShard(index, shard, tensor):
            return "shard '\(shard)' named by the index '\(index)' (for '\(tensor)' and possibly more) does not exist; "
                + "put the shard next to the index, or fix its weight_map"
        case let .invalidShard(path, error):
            return "shard '\(path)': \(error.description)"
        case let .tensorMissingFromShard(tensor, shard, index):
            return "the index '\(index)' assigns tensor '\(tensor)' to shard '\(shard)', which does not store it; "
                + "the index and the shards are out of step (regenerate the index or re-download the shards)"
        case let .duplicateTensorAcrossShards(tensor, shards):
            return "tensor '\(tensor)' is stored in more than one shard (\(shards.map { "'\($0)'" }.joined(separator: ", "))); "
                + "each tensor must be stored in exactly one shard"
        case let .invalidWriterInput(tensor, reason):
            return "cannot write tensor '\(tensor)': \(reason)"
        }
    }
}
