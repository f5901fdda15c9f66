import Foundation
import Testing
@testable import DiTModels
import TestSupport

/// Inputs that crashed the CLI in a `scripts/fuzz.sh` campaign, kept as regression tests: each must now
/// end in a typed error naming the field.
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
}
