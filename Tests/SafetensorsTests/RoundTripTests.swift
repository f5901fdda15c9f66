import Foundation
import Testing
import Tensors
@testable import Safetensors

@Suite struct RoundTripTests {
    @Test func writeThenReadReproducesTensorsExactly() throws {
        let a = try Tensor(shape: [2, 3], scalars: [1, -2.5, 3e-8, .infinity, -0.0, 65504])
        let b = try Tensor(shape: [], scalars: [42])
        let c = try Tensor(zeros: [0, 5])
        let data = try SafetensorsWriter.serialize(["b": b, "a.weight": a, "empty": c], metadata: ["format": "pt", "quote\"key": "line\nbreak"])
        let file = try SafetensorsFile(data: data)

        #expect(file.sortedNames == ["a.weight", "b", "empty"])
        #expect(file.names == ["a.weight", "b", "empty"])  // the writer emits sorted order
        #expect(file.metadata == ["format": "pt", "quote\"key": "line\nbreak"])
        #expect(file.dataStart % 8 == 0)
        // Bit-exact: F32 storage is lossless.
        let a2 = try file.tensor(named: "a.weight")
        #expect(a2.shape == [2, 3])
        #expect(a2.scalars.map(\.bitPattern) == a.scalars.map(\.bitPattern))
        #expect(try file.tensor(named: "b").shape == [])
        #expect(try file.tensor(named: "b").scalars == [42])
        #expect(try file.tensor(named: "empty").shape == [0, 5])
        #expect(try file.info(named: "empty").byteCount == 0)
        // Offsets are contiguous from 0 in sorted order.
        #expect(file.tensors.map(\.dataOffsets) == [0..<24, 24..<28, 28..<28])
        #expect(file.fileSize == file.dataStart + 28)
    }

    @Test func outputIsDeterministicAndIndependentOfInsertionOrder() throws {
        let x = try Tensor(shape: [2], scalars: [1, 2])
        let y = try Tensor(shape: [1], scalars: [3])
        var w1 = SafetensorsWriter(metadata: ["k2": "v", "k1": "v"])
        try w1.add(x, named: "x"); try w1.add(y, named: "y")
        var w2 = SafetensorsWriter(metadata: ["k1": "v", "k2": "v"])
        try w2.add(y, named: "y"); try w2.add(x, named: "x")
        #expect(w1.serialized() == w2.serialized())
        let header = String(decoding: w1.serialized().dropFirst(8), as: UTF8.self)
        #expect(header.hasPrefix("{\"__metadata__\":{\"k1\":\"v\",\"k2\":\"v\"},\"x\":"))
    }

    @Test func writesAndReadsAFileOnDisk() throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("safetensors-roundtrip-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let t = try Tensor(shape: [3, 1], scalars: [0.5, 0.25, 0.125])
        try SafetensorsWriter.write(["t": t], to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(try file.tensor(named: "t") == t)
    }

    @Test func writerRejectsBadInput() throws {
        var w = SafetensorsWriter()
        #expect(throws: SafetensorsError.self) { try w.add(Tensor(scalar: 1), named: "__metadata__") }
        try w.add(Tensor(scalar: 1), named: "x")
        #expect(throws: SafetensorsError.invalidWriterInput(tensor: "x", reason: "a tensor with this name was already added")) {
            try w.add(Tensor(scalar: 2), named: "x")
        }
        #expect(throws: SafetensorsError.self) { try w.addRaw(named: "h", dtype: .f16, shape: [3], bytes: [0, 0, 0, 0]) }
        #expect(throws: SafetensorsError.self) { try w.addRaw(named: "n", dtype: .u8, shape: [-1], bytes: []) }
        #expect(throws: SafetensorsError.self) { try w.addRaw(named: "f4", dtype: .f4, shape: [3], bytes: [0]) }
    }

    @Test func namesWithEscapesAndNonASCIIRoundTrip() throws {
        let names = ["tab\there", "back\\slash", "ctl\u{01}", "ünïcödé 🚀", ""]
        var w = SafetensorsWriter()
        for (i, n) in names.enumerated() { try w.add(Tensor(scalar: Float(i)), named: n) }
        let file = try SafetensorsFile(data: w.serialized())
        #expect(Set(file.names) == Set(names))
        for (i, n) in names.enumerated() { #expect(try file.tensor(named: n).scalars == [Float(i)]) }
    }

    @Test func readsFromADataSliceWithNonZeroStartIndex() throws {
        let data = try SafetensorsWriter.serialize(["v": Tensor(shape: [2], scalars: [7, 8])])
        let padded = Data([0xAA, 0xBB, 0xCC]) + data
        let slice = padded[3...]
        #expect(slice.startIndex == 3)
        #expect(try SafetensorsFile(data: slice).tensor(named: "v").scalars == [7, 8])
    }
}
