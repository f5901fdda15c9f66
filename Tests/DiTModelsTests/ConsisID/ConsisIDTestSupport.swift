import Foundation
import Safetensors
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// Fixture folders of the ConsisID family: the public folder and the generated `consisid_*` variants.
enum ConsisIDFixtures {
    static func url(_ name: String) -> URL {
        name == "consisid" ? Fixtures.folder(name) : Fixtures.root.appendingPathComponent("variants").appendingPathComponent(name)
    }

    static func tensors(_ name: String, _ file: String) throws -> [String: Tensor] {
        try SafetensorsFile(contentsOf: url(name).appendingPathComponent(file)).loadAll()
    }

    static func model(_ name: String) throws -> ConsisIDTransformer {
        let c = try ConsisIDConfiguration.load(url(name).appendingPathComponent("config.json"))
        return try ConsisIDFamily.load(c, weightsAt: url(name).appendingPathComponent("model.safetensors"))
    }

    /// The forward input of a folder (`input.*` without the rotary tables).
    static func input(_ t: [String: Tensor]) throws -> ConsisIDInput {
        var vit: [Tensor] = []
        while let v = t["input.id_vit_hidden.\(vit.count)"] { vit.append(v) }
        return ConsisIDInput(hiddenStates: try #require(t["input.hidden_states"]),
                             encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                             timestep: try #require(t["input.timestep"]), idCond: t["input.id_cond"],
                             idVitHidden: vit.isEmpty ? nil : vit)
    }

    /// Every variant folder of this family.
    static var variants: [String] {
        let root = Fixtures.root.appendingPathComponent("variants")
        // A missing variants folder lists no variants.
        return ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasPrefix("consisid_") }.sorted()
    }
}

/// A tiny ConsisID configuration: 2 heads × 16 (width 32, face width int(32/3·2) = 21), rotary, per-frame
/// 2×2 patches, `in_channels` 8 (4 latent + 4 image-latent channels), an extractor 16 wide with 2 scales.
func tinyConsisID(layers: Int = 2, face: Bool = true, interval: Int = 2, depth: Int = 2, scale: Double = 1) -> ConsisIDConfiguration {
    ConsisIDConfiguration(
        backbone: CogVideoXConfiguration(numAttentionHeads: 2, attentionHeadDim: 16, inChannels: 8, outChannels: 4,
                                         timeEmbedDim: 16, textEmbedDim: 12, numLayers: layers, sampleWidth: 16,
                                         sampleHeight: 16, sampleFrames: 9, patchSize: 2, maxTextSeqLength: 8,
                                         useRotaryPositionalEmbeddings: true),
        isTrainFace: face, crossAttnInterval: interval, crossAttnDimHead: 8, crossAttnNumHeads: 2, lfeIdDim: 10,
        lfeVitDim: 16, lfeDepth: depth, lfeDimHead: 8, lfeNumHeads: 2, lfeNumIdToken: 2, lfeNumQueries: 3,
        lfeOutputDim: 21, lfeFfMult: 2, lfeNumScale: 2, localFaceScale: scale)
}

/// Random inputs of ``tinyConsisID(layers:face:interval:depth:scale:)``: latent `[b, 2, 8, 4, 4]`, 5 text
/// tokens, an identity of batch `idBatch` with 3 ViT tokens per scale.
func consisIDInput(_ c: ConsisIDConfiguration, batch b: Int = 1, idBatch: Int = 1, seed: UInt64 = 1) -> ConsisIDInput {
    ConsisIDInput(hiddenStates: randomTensor([b, 2, c.backbone.inChannels, 4, 4], seed: seed),
                  encoderHiddenStates: randomTensor([b, 5, c.backbone.textEmbedDim], seed: seed + 1),
                  timestep: try! Tensor(shape: [b], repeating: 625),
                  idCond: randomTensor([idBatch, c.lfeIdDim], seed: seed + 2),
                  idVitHidden: (0..<c.lfeNumScale).map { randomTensor([idBatch, 3, c.lfeVitDim], seed: seed + 3 + UInt64($0)) })
}
