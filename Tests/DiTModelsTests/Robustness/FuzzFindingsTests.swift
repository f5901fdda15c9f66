import Foundation
import Safetensors
import Tensors
import Testing
@testable import DiTModels
import TestSupport

/// Inputs that crashed the CLI in a `scripts/fuzz.sh` campaign, kept as regression tests: each must now
/// end in a typed error naming the field, or load as the valid input it is.
@Suite struct FuzzFindingsTests {
    /// Campaign seed 2027, config round 2196: `sample_frames` = Int.min in a sincos-table CogVideoX config
    /// trapped on `sample_frames − 1` (arithmetic overflow) in `teacache verify`.
    @Test(arguments: [Int.min, Int.min + 1, -(1 << 40)])
    func cogVideoXSampleFramesFarBelowZeroIsATypedError(_ frames: Int) throws {
        let url = Fixtures.root.appendingPathComponent("variants/cogvideox_pt1_sincos/config.json")
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var config = try #require(object["config"] as? [String: Any])
        config["sample_frames"] = frames
        object["config"] = config
        let (className, body) = try ModelConfigFile.parse(JSONSerialization.data(withJSONObject: object))
        #expect {
            try CogVideoXConfiguration.parse(body, className: className)
        } throws: { error in
            guard case let ModelLoadError.unsupportedConfig(field, value, _)? = error as? ModelLoadError else { return false }
            return field == "sample_frames" && value == "\(frames)"
        }
    }

    /// The boundary stays as diffusers has it: `(sample_frames − 1) // ratio + 1` may be 0 (no table rows).
    @Test func cogVideoXSampleFramesGivingZeroFramesStillParses() throws {
        let url = Fixtures.root.appendingPathComponent("variants/cogvideox_pt1_sincos/config.json")
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var config = try #require(object["config"] as? [String: Any])
        config["sample_frames"] = -3  // (−4) // 4 + 1 = 0
        object["config"] = config
        let (className, body) = try ModelConfigFile.parse(JSONSerialization.data(withJSONObject: object))
        let c = try CogVideoXConfiguration.parse(body, className: className)
        #expect(c.sampleLatentFrames == 0)
    }

    /// An int8 file (2 × 3, values `q`, one scale per row) whose group-size metadata is `groupSize`.
    static func int8File(groupSize: String, scalesShape: [Int] = [2, 1]) throws -> SafetensorsFile {
        let q: [Int8] = [127, -3, 0, -127, 5, 64]
        var w = SafetensorsWriter(metadata: [Int8WeightFormat.groupSizeKey: groupSize])
        try w.addRaw(named: "w", dtype: .i8, shape: [2, 3], bytes: q.map { UInt8(bitPattern: $0) })
        try w.add(Tensor(shape: scalesShape, scalars: Array([0.5, 2.0, 1.0, 1.0].prefix(scalesShape.reduce(1, *)))),
                  named: "w" + Int8WeightFormat.scalesSuffix)
        return try SafetensorsFile(data: w.serialized())
    }

    /// Campaign seed 2029, sharded round 163: an int8 shard whose `teacache.int8_group_size` was
    /// "9223372036854775807" trapped on ⌈columns / group⌉ (arithmetic overflow in `WeightMatrix(int8:…)`)
    /// in `teacache calibrate --precision int8`. A group size of at least the row length is one group per
    /// row, so the file loads; its values are q × the row's scale (exact in float32).
    @Test(arguments: ["9223372036854775807", "9223372036854775806", "4611686018427387904", "3"])
    func int8GroupSizeNearIntMaxLoadsAsOneGroupPerRow(_ groupSize: String) throws {
        let file = try Self.int8File(groupSize: groupSize)
        let expected: [Float] = [63.5, -1.5, 0, -254, 10, 128]
        for precision in [WeightPrecision.int8, .float32, .bfloat16] {
            let m = try file.weightMatrix(named: "w", precision: precision)
            #expect(m.shape == [2, 3])
            #expect(m.float32Tensor().scalars == expected, "\(precision)")   // exact: every value is representable
        }
    }

    /// The same group sizes with scales of the wrong shape are a typed error naming the tensor.
    @Test(arguments: ["9223372036854775807", "1"])
    func int8GroupSizeNearIntMaxWithWrongScalesIsATypedError(_ groupSize: String) throws {
        let file = try Self.int8File(groupSize: groupSize, scalesShape: [2, 2])
        #expect {
            try file.weightMatrix(named: "w", precision: .int8)
        } throws: { error in
            guard case let SafetensorsError.invalidTensorEntry(tensor, _)? = error as? SafetensorsError else { return false }
            return tensor == "w"
        }
    }
}
