import Foundation
import Testing
import Tensors
@testable import Safetensors
import TestSupport

/// The listing printed by `teacache inspect`.
@Suite struct SummaryTests {
    @Test func listsTensorsSortedWithAlignedColumns() throws {
        var w = SafetensorsWriter()
        try w.addRaw(named: "proj.weight", dtype: .f16, shape: [4, 16], bytes: [UInt8](repeating: 0, count: 128))
        try w.add(Tensor(zeros: [6]), named: "proj.bias")
        try w.add(Tensor(scalar: 1), named: "s")
        let file = try SafetensorsFile(data: w.serialized())
        #expect(file.summaryLines() == [
            "3 tensors, 156 bytes of data",
            "proj.bias    F32  [6]",
            "proj.weight  F16  [4, 16]",
            "s            F32  []",
        ])
    }

    @Test func fluxForwardFixtureListing() throws {
        let file = try SafetensorsFile(contentsOf: Fixtures.url("flux", "forward.safetensors"))
        let lines = file.summaryLines()
        #expect(lines.count == 11)
        #expect(lines[0] == "10 tensors, 10480 bytes of data")
        #expect(lines[1] == "input.encoder_hidden_states  F32  [1, 6, 32]")
        #expect(lines.last == "teacache.residual            F32  [1, 24, 32]")
    }

    @Test func singularForOneTensorAndEmptyFile() throws {
        let one = try SafetensorsFile(data: SafetensorsWriter.serialize(["x": Tensor(scalar: 0)]))
        #expect(one.summaryLines() == ["1 tensor, 4 bytes of data", "x  F32  []"])
        let none = try SafetensorsFile(data: SafetensorsWriter.serialize([:]))
        #expect(none.summaryLines() == ["0 tensors, 0 bytes of data"])
    }
}
