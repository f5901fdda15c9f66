/// The validated header of a safetensors buffer.
///
/// ``parse(_:)`` applies every check of the reference implementation (huggingface/safetensors
/// `read_metadata` and `Metadata::validate`), plus duplicate-name and strict-integer checks, and
/// never traps on hostile input.
struct SafetensorsHeader: Sendable {
    /// Largest accepted header, as in the reference implementation.
    static let maxHeaderLength: UInt64 = 100_000_000
    /// The header key that holds free-form string metadata.
    static let metadataKey = "__metadata__"

    /// The header length N (the data buffer starts at 8 + N).
    let headerLength: Int
    /// Tensors in the order their keys appear in the header.
    let tensors: [SafetensorsTensorInfo]
    /// The `__metadata__` entries (empty when absent).
    let metadata: [String: String]

    /// Validates `buffer` (a whole safetensors file) and decodes its header.
    static func parse(_ buffer: UnsafeRawBufferPointer) throws(SafetensorsError) -> SafetensorsHeader {
        let fileSize = buffer.count
        guard fileSize >= 8 else { throw .headerTooSmall(fileSize: fileSize) }
        let n = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard n <= maxHeaderLength else { throw .headerTooLarge(headerLength: n) }
        // n <= 1e8 here, so the conversion and the addition cannot overflow.
        guard n <= UInt64(fileSize - 8) else { throw .invalidHeaderLength(headerLength: n, fileSize: fileSize) }
        let headerLength = Int(n)
        let headerBytes = Array(buffer[8..<(8 + headerLength)])

        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw .invalidHeaderUTF8 }
        guard headerBytes.first == UInt8(ascii: "{") else { throw .invalidHeaderStart(firstByte: headerBytes.first) }
        guard case let .object(members) = try HeaderJSONParser.parse(headerBytes) else {
            throw .invalidHeaderJSON(offset: 0, reason: "the header is not a JSON object")
        }

        var entries: [Entry] = []
        var metadata: [String: String]?
        var seen = Set<String>()
        for (key, value) in members {
            guard seen.insert(key).inserted else {
                if key == metadataKey { throw .invalidMetadata(reason: "__metadata__ appears more than once") }
                throw .duplicateTensorName(key)
            }
            if key == metadataKey {
                metadata = try decodeMetadata(value)
            } else {
                entries.append(try decodeEntry(name: key, value))
            }
        }

        let (tensors, bufferEnd) = try validateLayout(entries)
        let (withHeader, o1) = bufferEnd.addingReportingOverflow(8 + headerLength)
        guard !o1, withHeader == fileSize else {
            throw .metadataIncompleteBuffer(expectedFileSize: o1 ? Int.max : withHeader, actualFileSize: fileSize)
        }
        return SafetensorsHeader(headerLength: headerLength, tensors: tensors, metadata: metadata ?? [:])
    }

    /// A decoded header entry whose layout has not been validated yet.
    private struct Entry {
        let name: String
        let dtype: SafetensorsDType
        let shape: [Int]
        let dataOffsets: Range<Int>
    }

    /// Decodes `__metadata__`: a flat object whose values are all strings, without duplicate keys.
    private static func decodeMetadata(_ value: HeaderJSON) throws(SafetensorsError) -> [String: String] {
        guard case let .object(members) = value else {
            throw .invalidMetadata(reason: "it is \(value.typeName), not an object")
        }
        var result: [String: String] = [:]
        for (key, v) in members {
            guard case let .string(s) = v else {
                throw .invalidMetadata(reason: "value of '\(key)' is \(v.typeName), not a string")
            }
            guard result.updateValue(s, forKey: key) == nil else {
                throw .invalidMetadata(reason: "key '\(key)' appears more than once")
            }
        }
        return result
    }

    /// Decodes one `"name": {"dtype": …, "shape": […], "data_offsets": [begin, end]}` entry.
    /// Unknown fields are ignored, as the reference implementation does.
    private static func decodeEntry(name: String, _ value: HeaderJSON) throws(SafetensorsError) -> Entry {
        guard case let .object(fields) = value else {
            throw .invalidTensorEntry(tensor: name, reason: "the entry is \(value.typeName), not an object")
        }
        var byKey: [String: HeaderJSON] = [:]
        for (key, v) in fields {
            guard byKey.updateValue(v, forKey: key) == nil else {
                throw .invalidTensorEntry(tensor: name, reason: "field '\(key)' appears more than once")
            }
        }
        guard let dtypeValue = byKey["dtype"] else { throw .invalidTensorEntry(tensor: name, reason: "missing field 'dtype'") }
        guard let shapeValue = byKey["shape"] else { throw .invalidTensorEntry(tensor: name, reason: "missing field 'shape'") }
        guard let offsetsValue = byKey["data_offsets"] else {
            throw .invalidTensorEntry(tensor: name, reason: "missing field 'data_offsets'")
        }

        guard case let .string(dtypeName) = dtypeValue else {
            throw .invalidTensorEntry(tensor: name, reason: "'dtype' is \(dtypeValue.typeName), not a string")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else { throw .unknownDType(tensor: name, dtype: dtypeName) }

        guard case let .array(dims) = shapeValue else {
            throw .invalidShape(tensor: name, reason: "'shape' is \(shapeValue.typeName), not an array")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for (axis, d) in dims.enumerated() {
            guard let extent = d.nonNegativeInt else {
                throw .invalidShape(tensor: name, reason: "dimension \(axis) is \(describe(d)), not a non-negative integer")
            }
            shape.append(extent)
        }

        guard case let .array(offsets) = offsetsValue else {
            throw .invalidDataOffsets(tensor: name, reason: "'data_offsets' is \(offsetsValue.typeName), not an array")
        }
        guard offsets.count == 2 else {
            throw .invalidDataOffsets(tensor: name, reason: "expected exactly 2 integers [begin, end], got \(offsets.count) values")
        }
        guard let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
            throw .invalidDataOffsets(tensor: name, reason: "begin and end must be non-negative integers, got [\(describe(offsets[0])), \(describe(offsets[1]))]")
        }
        guard begin <= end else {
            throw .invalidDataOffsets(tensor: name, reason: "begin \(begin) is after end \(end)")
        }
        return Entry(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// Checks that the tensors tile the data buffer from 0 without gaps or overlaps and that every
    /// byte range matches dtype × shape. Returns the validated tensors (in header order) and the end
    /// of the last tensor (the data buffer length).
    private static func validateLayout(
        _ tensors: [Entry]
    ) throws(SafetensorsError) -> (tensors: [SafetensorsTensorInfo], bufferEnd: Int) {
        var counts = [Int](repeating: 0, count: tensors.count)
        let order = tensors.indices.sorted { a, b in
            let ra = tensors[a].dataOffsets, rb = tensors[b].dataOffsets
            if ra.lowerBound != rb.lowerBound { return ra.lowerBound < rb.lowerBound }
            if ra.upperBound != rb.upperBound { return ra.upperBound < rb.upperBound }
            return a < b
        }
        var position = 0
        for i in order {
            let info = tensors[i]
            guard info.dataOffsets.lowerBound == position else {
                throw .invalidOffset(tensor: info.name, expectedBegin: position, actualBegin: info.dataOffsets.lowerBound)
            }
            position = info.dataOffsets.upperBound

            var elements = 1
            for d in info.shape {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw .validationOverflow(tensor: info.name) }
                elements = p
            }
            let (bits, o) = elements.multipliedReportingOverflow(by: info.dtype.bitSize)
            guard !o else { throw .validationOverflow(tensor: info.name) }
            guard bits % 8 == 0 else { throw .misalignedSlice(tensor: info.name) }
            guard bits / 8 == info.dataOffsets.count else {
                throw .tensorInvalidInfo(tensor: info.name, dtype: info.dtype.rawValue, shape: info.shape,
                                         expectedBytes: bits / 8, actualBytes: info.dataOffsets.count)
            }
            counts[i] = elements
        }
        let infos = tensors.indices.map { i in
            SafetensorsTensorInfo(name: tensors[i].name, dtype: tensors[i].dtype, shape: tensors[i].shape,
                                  dataOffsets: tensors[i].dataOffsets, elementCount: counts[i])
        }
        return (infos, position)
    }

    /// A short rendering of a JSON value for error messages (numbers shown verbatim, capped in length).
    private static func describe(_ value: HeaderJSON) -> String {
        if case let .number(text) = value { return text.count <= 40 ? text : String(text.prefix(40)) + "…" }
        return value.typeName
    }
}
