import Foundation
import Safetensors
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// Fixture folders of the CogVideoX family: the public 1.5 folder and the generated variants.
enum CogVideoXFixtures {
    static func url(_ name: String) -> URL {
        name == "cogvideox" ? Fixtures.folder(name) : Fixtures.root.appendingPathComponent("variants").appendingPathComponent(name)
    }

    static func tensors(_ name: String, _ file: String) throws -> [String: Tensor] {
        try SafetensorsFile(contentsOf: url(name).appendingPathComponent(file)).loadAll()
    }

    static func model(_ name: String) throws -> CogVideoXTransformer {
        let c = try CogVideoXConfiguration.load(url(name).appendingPathComponent("config.json"))
        return try CogVideoXFamily.load(c, weightsAt: url(name).appendingPathComponent("model.safetensors"))
    }

    /// The forward input of a folder (`input.*` without the rotary tables).
    static func input(_ t: [String: Tensor]) throws -> CogVideoXInput {
        CogVideoXInput(hiddenStates: try #require(t["input.hidden_states"]),
                       encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                       timestep: try #require(t["input.timestep"]), ofs: t["input.ofs"])
    }

    /// Every variant folder of this family.
    static var variants: [String] {
        let root = Fixtures.root.appendingPathComponent("variants")
        return ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasPrefix("cogvideox_") }.sorted()
    }
}

/// A tiny CogVideoX 1.5 configuration (2 heads × 16, 1 block, 2×2×2 patches, rotary).
func tinyCogVideoX15(layers: Int = 1, ofs: Int? = nil, outChannels: Int = 4) -> CogVideoXConfiguration {
    CogVideoXConfiguration(numAttentionHeads: 2, attentionHeadDim: 16, inChannels: 4, outChannels: outChannels,
                           timeEmbedDim: 24, ofsEmbedDim: ofs, textEmbedDim: 12, numLayers: layers, sampleWidth: 16,
                           sampleHeight: 16, sampleFrames: 9, patchSize: 2, patchSizeT: 2, maxTextSeqLength: 8,
                           useRotaryPositionalEmbeddings: true, patchBias: false)
}

/// A tiny CogVideoX 1.0 2B-style configuration (sincos positions, per-frame patches, 5 text tokens).
func tinyCogVideoX2B(layers: Int = 1) -> CogVideoXConfiguration {
    CogVideoXConfiguration(numAttentionHeads: 2, attentionHeadDim: 16, inChannels: 4, outChannels: 4,
                           timeEmbedDim: 24, textEmbedDim: 12, numLayers: layers, sampleWidth: 8, sampleHeight: 8,
                           sampleFrames: 5, patchSize: 2, maxTextSeqLength: 5)
}

func cogInput(_ c: CogVideoXConfiguration, batch b: Int = 1, frames f: Int = 2, height h: Int = 4, width w: Int = 4,
              text l: Int, seed: UInt64 = 1) -> CogVideoXInput {
    CogVideoXInput(hiddenStates: randomTensor([b, f, c.inChannels, h, w], seed: seed),
                   encoderHiddenStates: randomTensor([b, l, c.textEmbedDim], seed: seed + 1),
                   timestep: try! Tensor(shape: [b], repeating: 625),
                   ofs: c.ofsEmbedDim == nil ? nil : try! Tensor(shape: [1], repeating: 2))
}
