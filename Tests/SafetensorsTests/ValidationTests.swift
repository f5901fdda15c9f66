import Foundation
import Testing
@testable import Safetensors
import TestSupport

/// One failing case per validation rule, each asserting the specific error.
@Suite struct ValidationTests {
    /// A valid two-tensor layout used as the base for most cases: a F32 [2] then a F16 [3].
    static let validHeader = "{" + entry("a", "F32", [2], 0, 8) + "," + entry("b", "F16", [3], 8, 14) + "}"
    static let validPayload = [UInt8](repeating: 0, count: 14)

    @Test func baseCaseIsValid() throws {
        let file = try SafetensorsFile(bytes: makeFile(header: Self.validHeader, payload: Self.validPayload))
        #expect(file.names == ["a", "b"])
        #expect(file.headerLength == Self.validHeader.utf8.count)  // unpadded headers are legal
    }

    @Test func fileShorterThanEightBytes() {
        #expect(openError([]) == .headerTooSmall(fileSize: 0))
        #expect(openError([1, 0, 0, 0, 0, 0, 0]) == .headerTooSmall(fileSize: 7))
    }

    @Test func headerLengthAboveCap() {
        #expect(openError(makeFile(header: "{}", headerLength: 100_000_001)) == .headerTooLarge(headerLength: 100_000_001))
        #expect(openError(makeFile(header: "{}", headerLength: UInt64.max)) == .headerTooLarge(headerLength: UInt64.max))
        // Values above Int.max must not trap either.
        #expect(openError(makeFile(header: "{}", headerLength: 1 << 63)) == .headerTooLarge(headerLength: 1 << 63))
    }

    @Test func headerLengthBeyondFile() {
        #expect(openError(makeFile(header: "{}", headerLength: 3)) == .invalidHeaderLength(headerLength: 3, fileSize: 10))
        #expect(openError(makeFile(header: "", headerLength: 99_999_999)) == .invalidHeaderLength(headerLength: 99_999_999, fileSize: 8))
    }

    @Test func headerNotUTF8() {
        var bytes = makeFile(header: "{\"a\":1}")
        bytes[10] = 0xFF
        #expect(openError(bytes) == .invalidHeaderUTF8)
    }

    @Test func headerMustStartWithBrace() {
        #expect(openError(makeFile(header: " {}")) == .invalidHeaderStart(firstByte: 0x20))
        #expect(openError(makeFile(header: "[]")) == .invalidHeaderStart(firstByte: UInt8(ascii: "[")))
        #expect(openError(makeFile(header: "")) == .invalidHeaderStart(firstByte: nil))
    }

    @Test(arguments: ["{", "{\"a\":}", "{\"a\":1,}", "{} x", "{\"a\":tru}", "{\"a\":01}", "{\"a\":\"\\x\"}",
                      "{\"a\":\"\\ud800\"}", "{\"a\":\"\u{01}\"}", "{'a':1}",
                      "{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"])
    func malformedJSON(header: String) {
        guard case .invalidHeaderJSON = openError(makeFile(header: header)) else {
            Issue.record("expected invalidHeaderJSON for \(header.prefix(40))")
            return
        }
    }

    @Test func spacePaddedHeaderIsAccepted() throws {
        let file = try SafetensorsFile(bytes: makeFile(header: Self.validHeader + "       ", payload: Self.validPayload))
        #expect(file.names == ["a", "b"])
    }

    @Test func duplicateTensorNames() {
        // JSONSerialization/JSONDecoder would silently keep one of the two.
        let header = "{" + entry("a", "F32", [1], 0, 4) + "," + entry("a", "F32", [1], 4, 8) + "}"
        #expect(openError(makeFile(header: header, payload: [UInt8](repeating: 0, count: 8))) == .duplicateTensorName("a"))
    }

    @Test func duplicateFieldInsideEntry() {
        let header = "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        #expect(openError(makeFile(header: header, payload: [0, 0, 0, 0]))
                == .invalidTensorEntry(tensor: "a", reason: "field 'dtype' appears more than once"))
    }

    @Test func entryMissingFieldsOrNotAnObject() {
        #expect(openError(makeFile(header: "{\"a\":[]}")) == .invalidTensorEntry(tensor: "a", reason: "the entry is an array, not an object"))
        #expect(openError(makeFile(header: "{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}"))
                == .invalidTensorEntry(tensor: "a", reason: "missing field 'dtype'"))
        #expect(openError(makeFile(header: "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}"))
                == .invalidTensorEntry(tensor: "a", reason: "missing field 'shape'"))
        #expect(openError(makeFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}"))
                == .invalidTensorEntry(tensor: "a", reason: "missing field 'data_offsets'"))
        #expect(openError(makeFile(header: "{\"a\":{\"dtype\":32,\"shape\":[],\"data_offsets\":[0,4]}}"))
                == .invalidTensorEntry(tensor: "a", reason: "'dtype' is a number, not a string"))
    }

    @Test func unknownDType() {
        let header = "{" + entry("w", "F31", [1], 0, 4) + "}"
        #expect(openError(makeFile(header: header, payload: [0, 0, 0, 0])) == .unknownDType(tensor: "w", dtype: "F31"))
        let lower = "{" + entry("w", "f32", [1], 0, 4) + "}"
        #expect(openError(makeFile(header: lower, payload: [0, 0, 0, 0])) == .unknownDType(tensor: "w", dtype: "f32"))
    }

    @Test(arguments: ["[-1]", "[2.0]", "[1e2]", "[\"2\"]", "[null]", "[99999999999999999999]", "3", "{}"])
    func shapeEntriesMustBeNonNegativeIntegers(shape: String) {
        let header = "{\"w\":{\"dtype\":\"U8\",\"shape\":\(shape),\"data_offsets\":[0,2]}}"
        guard case .invalidShape(tensor: "w", _) = openError(makeFile(header: header, payload: [0, 0])) else {
            Issue.record("expected invalidShape for shape \(shape)")
            return
        }
    }

    @Test func elementCountOverflow() {
        let big = Int.max / 2 + 1
        let header = "{" + entry("w", "U8", [big, 4], 0, 0) + "}"
        #expect(openError(makeFile(header: header)) == .validationOverflow(tensor: "w"))
        // The element count fits but the bit count does not.
        let bits = "{" + entry("v", "F32", [Int.max / 4], 0, 0) + "}"
        #expect(openError(makeFile(header: bits)) == .validationOverflow(tensor: "v"))
    }

    @Test func subByteDTypeMustFillWholeBytes() {
        let header = "{" + entry("q", "F4", [3], 0, 2) + "}"
        #expect(openError(makeFile(header: header, payload: [0, 0])) == .misalignedSlice(tensor: "q"))
    }

    @Test(arguments: ["[0]", "[0,4,8]", "[]", "[-4,0]", "[0,-4]", "[0.0,4]", "[0,\"4\"]", "7", "[0,18446744073709551616]"])
    func dataOffsetsMustBeTwoNonNegativeIntegers(offsets: String) {
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\(offsets)}}"
        guard case .invalidDataOffsets(tensor: "w", _) = openError(makeFile(header: header, payload: [0, 0, 0, 0])) else {
            Issue.record("expected invalidDataOffsets for \(offsets)")
            return
        }
    }

    @Test func beginAfterEnd() {
        let header = "{" + entry("w", "F32", [0], 4, 0) + "}"
        #expect(openError(makeFile(header: header, payload: [0, 0, 0, 0]))
                == .invalidDataOffsets(tensor: "w", reason: "begin 4 is after end 0"))
    }

    @Test func byteSizeMustMatchDTypeTimesShape() {
        let header = "{" + entry("w", "F32", [2, 3], 0, 20) + "}"
        #expect(openError(makeFile(header: header, payload: [UInt8](repeating: 0, count: 20)))
                == .tensorInvalidInfo(tensor: "w", dtype: "F32", shape: [2, 3], expectedBytes: 24, actualBytes: 20))
    }

    @Test func gapBetweenTensors() {
        let header = "{" + entry("a", "F32", [1], 0, 4) + "," + entry("b", "F32", [1], 8, 12) + "}"
        #expect(openError(makeFile(header: header, payload: [UInt8](repeating: 0, count: 12)))
                == .invalidOffset(tensor: "b", expectedBegin: 4, actualBegin: 8))
    }

    @Test func overlappingTensors() {
        let header = "{" + entry("a", "F32", [2], 0, 8) + "," + entry("b", "F32", [1], 4, 8) + "}"
        #expect(openError(makeFile(header: header, payload: [UInt8](repeating: 0, count: 8)))
                == .invalidOffset(tensor: "b", expectedBegin: 8, actualBegin: 4))
        // Two tensors aliasing the same bytes.
        let alias = "{" + entry("a", "F32", [1], 0, 4) + "," + entry("b", "F32", [1], 0, 4) + "}"
        #expect(openError(makeFile(header: alias, payload: [0, 0, 0, 0])) == .invalidOffset(tensor: "b", expectedBegin: 4, actualBegin: 0))
    }

    @Test func firstTensorMustStartAtZero() {
        let header = "{" + entry("a", "F32", [1], 4, 8) + "}"
        #expect(openError(makeFile(header: header, payload: [UInt8](repeating: 0, count: 8)))
                == .invalidOffset(tensor: "a", expectedBegin: 0, actualBegin: 4))
    }

    @Test func offsetsOutOfFileOrderAreFineWhenContiguous() throws {
        let header = "{" + entry("late", "F32", [1], 4, 8) + "," + entry("early", "F32", [1], 0, 4) + "}"
        let file = try SafetensorsFile(bytes: makeFile(header: header, payload: leBytes([Float(1).bitPattern, Float(2).bitPattern])))
        #expect(file.names == ["late", "early"])
        #expect(file.sortedNames == ["early", "late"])
        #expect(try file.tensor(named: "late").scalars == [2])
    }

    @Test func trailingBytesAndTruncatedData() {
        let n = Self.validHeader.utf8.count
        let trailing = makeFile(header: Self.validHeader, payload: Self.validPayload + [0xEE])
        #expect(openError(trailing) == .metadataIncompleteBuffer(expectedFileSize: 8 + n + 14, actualFileSize: 8 + n + 15))
        let truncated = makeFile(header: Self.validHeader, payload: Array(Self.validPayload.dropLast()))
        #expect(openError(truncated) == .metadataIncompleteBuffer(expectedFileSize: 8 + n + 14, actualFileSize: 8 + n + 13))
    }

    @Test(arguments: [
        ("\"x\"", "it is a string, not an object"),
        ("{\"k\":1}", "value of 'k' is a number, not a string"),
        ("{\"k\":{\"nested\":\"v\"}}", "value of 'k' is an object, not a string"),
        ("{\"k\":\"v\",\"k\":\"w\"}", "key 'k' appears more than once"),
        ("null", "it is null, not an object"),
    ])
    func metadataMustBeFlatStringMap(metadata: String, reason: String) {
        let header = "{\"__metadata__\":\(metadata)}"
        #expect(openError(makeFile(header: header)) == .invalidMetadata(reason: reason))
    }

    @Test func validMetadataAndEmptyFile() throws {
        let file = try SafetensorsFile(bytes: makeFile(header: "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9 \\ud83d\\ude80\"}}"))
        #expect(file.metadata == ["format": "pt", "note": "café 🚀"])
        #expect(file.names.isEmpty)
    }

    @Test func unknownEntryFieldsAreIgnoredLikeTheReference() throws {
        let header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":[1,{\"x\":null}]}}"
        let file = try SafetensorsFile(bytes: makeFile(header: header, payload: leBytes([Float(3).bitPattern])))
        #expect(try file.tensor(named: "a").scalars == [3])
    }

    @Test func missingAndDirectoryPathsThrowFileUnreadable() {
        for path in ["/nonexistent/model.safetensors", Fixtures.root.path] {
            do {
                _ = try SafetensorsFile(path: path)
                Issue.record("expected an error for \(path)")
            } catch {
                guard case .fileUnreadable(path: path, _) = error else {
                    Issue.record("unexpected \(error)")
                    continue
                }
            }
        }
    }

    @Test func everyErrorHasAMessage() {
        let errors: [SafetensorsError] = [
            .headerTooSmall(fileSize: 3), .invalidOffset(tensor: "t", expectedBegin: 4, actualBegin: 8),
            .tensorInvalidInfo(tensor: "t", dtype: "F32", shape: [2], expectedBytes: 8, actualBytes: 4),
            .unsupportedDType(tensor: "t", dtype: "U8"), .invalidHeaderStart(firstByte: 0x5B),
        ]
        for e in errors { #expect(!e.description.isEmpty && !e.description.contains("\n")) }
        #expect(SafetensorsError.unsupportedDType(tensor: "w.q", dtype: "U8").description.contains("'w.q'"))
        #expect(SafetensorsError.invalidOffset(tensor: "t", expectedBegin: 4, actualBegin: 8).description.contains("gap"))
    }
}
