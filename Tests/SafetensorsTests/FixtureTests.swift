import Foundation
import Testing
import Tensors
@testable import Safetensors
import TestSupport

/// Reads the diffusers-generated fixtures and compares against an independent decode: the header is
/// parsed with Foundation's JSONSerialization and the float32 bytes are assembled by hand.
@Suite struct FixtureTests {
    /// An independent reader: (dtype, shape, Float values) per tensor, via JSONSerialization.
    static func independentDecode(_ url: URL) throws -> [String: (dtype: String, shape: [Int], values: [Float])] {
        let bytes = [UInt8](try Data(contentsOf: url))
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any])
        var result: [String: (String, [Int], [Float])] = [:]
        for (name, value) in json where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            let dtype = try #require(entry["dtype"] as? String)
            let shape = try #require(entry["shape"] as? [Int])
            let offsets = try #require(entry["data_offsets"] as? [Int])
            let start = 8 + n + offsets[0]
            var values: [Float] = []
            if dtype == "F32" {
                var p = start
                while p < 8 + n + offsets[1] {
                    let bits = UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24
                    values.append(Float(bitPattern: bits))
                    p += 4
                }
            }
            result[name] = (dtype, shape, values)
        }
        return result
    }

    @Test func fluxModelHasKnownTensorAndMatchesIndependentDecodeBitForBit() throws {
        let url = Fixtures.url("flux", "model.safetensors")
        let file = try SafetensorsFile(contentsOf: url)
        let reference = try Self.independentDecode(url)

        let info = try file.info(named: "context_embedder.weight")
        #expect(info.dtype == .f32)
        #expect(info.shape == [32, 32])
        #expect(info.dataOffsets == 128..<4224)
        #expect(file.metadata.isEmpty)  // FORMAT.md: fixtures carry no metadata
        #expect(Set(file.names) == Set(reference.keys))

        // Every tensor, every value: F32 loads must be exact copies of the stored bits.
        for name in file.names {
            let ref = try #require(reference[name])
            let t = try file.tensor(named: name)
            #expect(ref.dtype == "F32")
            #expect(t.shape == ref.shape, "\(name)")
            #expect(t.scalars.map(\.bitPattern) == ref.values.map(\.bitPattern), "\(name)")
        }
        // The parameter count recorded in MANIFEST.json.
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.root.appendingPathComponent("MANIFEST.json"))) as? [String: Any])
        let families = try #require(manifest["families"] as? [String: Any])
        let flux = try #require(families["flux"] as? [String: Any])
        let parameters = try #require(flux["parameters"] as? Int)
        #expect(file.tensors.reduce(0) { $0 + $1.elementCount } == parameters)
    }

    @Test(arguments: ["flux", "tangoflux", "wan21"])
    func everyFixtureFileOpensAndMatchesShapesInForwardJSON(family: String) throws {
        for name in ["model.safetensors", "forward.safetensors", "sampling.safetensors"] {
            let url = Fixtures.url(family, name)
            let file = try SafetensorsFile(contentsOf: url)
            let reference = try Self.independentDecode(url)
            #expect(file.names.count == reference.count)
            for info in file.tensors {
                #expect(info.shape == reference[info.name]?.shape)
            }
            // Spot-check the first and last value of every tensor against the hand decode.
            for info in file.tensors where info.elementCount > 0 && info.dtype == .f32 {
                let t = try file.tensor(named: info.name).scalars
                let ref = try #require(reference[info.name]?.values)
                #expect(t.first?.bitPattern == ref.first?.bitPattern && t.last?.bitPattern == ref.last?.bitPattern, "\(family)/\(name): \(info.name)")
            }
        }
        // forward.json lists the shape of every tensor in forward.safetensors.
        let forwardJSON = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url(family, "forward.json"))) as? [String: Any])
        let listed = try #require(forwardJSON["tensors"] as? [String: [String: Any]])
        let forward = try SafetensorsFile(contentsOf: Fixtures.url(family, "forward.safetensors"))
        #expect(Set(forward.names) == Set(listed.keys))
        for (name, entry) in listed {
            #expect(try forward.info(named: name).shape == (entry["shape"] as? [Int]), "\(family): \(name)")
        }
    }

    @Test func rewritingAFixtureReproducesItsTensors() throws {
        let original = try SafetensorsFile(contentsOf: Fixtures.url("wan21", "forward.safetensors"))
        let all = try original.loadAll()
        let copy = try SafetensorsFile(data: SafetensorsWriter.serialize(all))
        for name in original.names {
            #expect(try copy.tensor(named: name) == all[name]!)
        }
    }
}
