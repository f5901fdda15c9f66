import ArgumentParser
import DiTModels
import Foundation
import Logging
import Tensors
import TeaCacheDemo

/// `teacache quantize --config CONFIG --weights IN --precision P --output OUT`: stores a diffusers
/// checkpoint's weight matrices in another precision once, so later loads at that precision use the
/// file in place (int8 quantised per row and group of 64 columns; bf16/f16 rounded to nearest even).
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a checkpoint's weight matrices in bfloat16, float16 or int8, for in-place loading.",
        discussion: "The weights are checked against the configuration exactly as a load does. Other parameters "
            + "(norms, biases, embeddings) are written as float32. The output appears only when complete."
    )

    @Option(help: "The model's diffusers config.json (or a benchmark-style file).")
    var config: String

    @Option(help: "Weights: a .safetensors file, a sharded checkpoint's index .json, or a diffusers transformer folder.")
    var weights: String

    @Option(help: "Where to write the converted .safetensors file.")
    var output: String

    @OptionGroup var precision: PrecisionOptions

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = logging.logger("quantize")
        let start = Date()
        do {
            try PathChecks.inputFile(config, flag: "--config", what: "the model's config.json")
            try PathChecks.inputPath(weights, flag: "--weights", what: "a .safetensors file, an index .json or a transformer folder")
            try PathChecks.output(output, flag: "--output", folder: false)
        } catch {
            CLIErrors.exit(error, log: log)
        }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: config))
            let (className, body) = try ModelConfigFile.parse(data)
            let family = try DiTFamilies.family(forClass: className)
            try Self.convert(family, body: body, className: className, weights: URL(fileURLWithPath: weights),
                             precision: precision.precision, output: URL(fileURLWithPath: output))
        } catch {
            CLIErrors.exit(error, log: log)
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? nil  // size is informational only
        print("wrote \(output) (\(precision.precision) weight matrices\(bytes.map { String(format: ", %.1f MB", Double($0) / 1e6) } ?? ""))")
        log.info("quantize done", metadata: ["elapsed": "\(secondsSince(start))"])
    }

    private static func convert<F: DiTFamily>(_: F.Type, body: Data, className: String, weights: URL,
                                              precision: WeightPrecision, output: URL) throws {
        let configuration = try F.Configuration.parse(body, className: className)
        try F.convertWeights(configuration, weightsAt: weights, precision: precision, to: output)
    }
}
