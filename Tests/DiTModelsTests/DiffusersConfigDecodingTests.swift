import Foundation
import Testing
@testable import DiTModels

/// diffusers' config semantics: absent → the constructor default; `null` → None for optional fields.
@Suite struct DiffusersConfigDecodingTests {
    struct Probe: Decodable, Equatable {
        var width: Int
        var out: Int?
        enum Keys: String, CodingKey { case width, out }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            width = try c.diffusersValue(.width, default: 7)
            out = try c.diffusersOptional(.out, default: 3)
        }
        init(width: Int, out: Int?) { self.width = width; self.out = out }
    }

    @Test(arguments: [
        ("{}", Probe(width: 7, out: 3)),
        (#"{"width": 5, "out": 9}"#, Probe(width: 5, out: 9)),
        (#"{"width": null, "out": null}"#, Probe(width: 7, out: nil)),
    ])
    func absentNullAndPresent(_ json: String, _ expected: Probe) throws {
        #expect(try JSONDecoder().decode(Probe.self, from: Data(json.utf8)) == expected)
    }

    @Test func wrongTypesStillFail() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Probe.self, from: Data(#"{"width": "five"}"#.utf8)) }
    }
}
