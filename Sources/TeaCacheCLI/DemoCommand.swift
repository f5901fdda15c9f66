import ArgumentParser
import Foundation
import Logging
import TeaCacheDemo
import Tensors

/// `teacache demo`: uncached vs TeaCache at several thresholds, with progress, a table, charts and traces.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a model uncached and with TeaCache; print speedups and accuracy, write SVG charts and traces.",
        discussion: """
            The default is a FLUX-shaped benchmark model (512 wide, 2 double + 4 single blocks, 1024 image + 128 \
            text tokens) with seeded random weights, sampled for 28 flow-matching Euler steps. Every threshold runs \
            with the family's published coefficients and with coefficients calibrated on the uncached run.
            measured = uncached wall / cached wall; predicted = calls / computed calls. PSNR uses the peak-to-peak \
            range of the uncached final latent as the peak.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    // `.unconditional` so that `--thresholds -1` reaches the validation (and its message) instead of
    // being taken for an unknown option.
    @Option(parsing: .unconditional, help: "Comma-separated thresholds (default: the family's, e.g. 0.2,0.3,0.6 for flux).")
    var thresholds: String?

    @Option(help: "A built-in preset name (`teacache presets`) or a preset JSON from `teacache calibrate` (TeaCache or MagCache), run as extra rows.")
    var preset: String?

    @Option(help: "Cache policies side by side: teacache, first-block, magcache, taylorseer, easycache, dbcache, forecast (TeaCache and MagCache with forecast residuals beside the stale ones), a comma list of them, or all.")
    var policy: String = "teacache"

    @Option(parsing: .unconditional, help: "Comma-separated First-Block Cache thresholds (default 0.05,0.1,0.2; diffusers' default is 0.05).")
    var firstBlockThresholds: String?

    @Option(parsing: .unconditional, help: "Comma-separated MagCache thresholds (default 0.06,0.12,0.24; diffusers' default is 0.06).")
    var magcacheThresholds: String?

    @Option(parsing: .unconditional, help: "Comma-separated EasyCache thresholds (default 0.05,0.1,0.2).")
    var easycacheThresholds: String?

    @Option(parsing: .unconditional, help: "Comma-separated DBCache thresholds (default 0.08,0.16,0.32; cache-dit's default is 0.08).")
    var dbcacheThresholds: String?

    @Option(help: "Output folder for charts, traces and the report.")
    var output: String = "teacache-output"

    @Option(help: "Rounds of runs, each the uncached run then every cached row; the table shows the fastest wall time, the spread, and the median speedup of runs from the same round (reduces noise from other processes).")
    var repeats: Int = 2

    @Option(parsing: .unconditional, help: "Compare weight precisions instead of policies: a comma list (bfloat16,int8,...) or all; each runs uncached and with TeaCache at the first threshold, PSNR against float32 uncached.")
    var comparePrecisions: String?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = logging.logger("demo")
        let start = Date()
        if let comparePrecisions {
            do {
                let precisions = try Self.parsePrecisions(comparePrecisions)
                modelOptions.applyThreads()
                modelOptions.logSource(log)
                let threshold = try thresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }?.first
                let table = try PrecisionComparison.run(source: modelOptions.source, precisions: precisions, threshold: threshold) {
                    let bar = ProgressBar.standardError(label: $0)
                    return { step, total, elapsed in bar.update(step: step, total: total, elapsed: elapsed) }
                }
                print(table.render())
            } catch {
                CLIErrors.exit(error, log: log)
            }
            return
        }
        do {
            var options = DemoOptions(
                source: modelOptions.source, thresholds: try thresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) },
                presetPath: preset, outputDirectory: output, repeats: repeats)
            options.policies = try DemoPolicy.parse(policy)
            options.firstBlockThresholds = try firstBlockThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
            options.magCacheThresholds = try magcacheThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
            options.easyCacheThresholds = try easycacheThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
            options.dbCacheThresholds = try dbcacheThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
            try options.validate()
            modelOptions.applyThreads()
            modelOptions.logSource(log)
            let report = try DemoRunner.run(options, progress: { ProgressBar.standardError(label: $0) },
                                            notice: { FileHandle.standardError.write(Data("\($0)\n".utf8)) })
            print(report.render())
            log.info("demo done", metadata: ["elapsed": "\(secondsSince(start))", "output": "\(output)"])
        } catch {
            CLIErrors.exit(error, log: log)
        }
    }

    /// `all` or a comma list of precision names.
    static func parsePrecisions(_ text: String) throws(DemoError) -> [WeightPrecision] {
        if text == "all" { return WeightPrecision.allCases }
        var out: [WeightPrecision] = []
        for name in text.split(separator: ",") {
            guard let p = WeightPrecision(name: name.trimmingCharacters(in: .whitespaces)) else {
                throw .invalidOption("--compare-precisions: unknown precision \"\(name)\"; use \(WeightPrecision.allCases.map(\.rawValue).joined(separator: ", ")) or all")
            }
            out.append(p)
        }
        return out
    }
}
