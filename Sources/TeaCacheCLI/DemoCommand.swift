import ArgumentParser
import Foundation
import Logging
import TeaCacheDemo

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

    @Option(help: "Cache policies side by side: teacache, first-block, magcache, a comma list of them, or all.")
    var policy: String = "teacache"

    @Option(parsing: .unconditional, help: "Comma-separated First-Block Cache thresholds (default 0.05,0.1,0.2; diffusers' default is 0.05).")
    var firstBlockThresholds: String?

    @Option(parsing: .unconditional, help: "Comma-separated MagCache thresholds (default 0.06,0.12,0.24; diffusers' default is 0.06).")
    var magcacheThresholds: String?

    @Option(help: "Output folder for charts, traces and the report.")
    var output: String = "teacache-output"

    @Option(help: "Repeat every run this many times and report the fastest wall time (reduces noise from other processes).")
    var repeats: Int = 2

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = logging.logger("demo")
        let start = Date()
        do {
            var options = DemoOptions(
                source: modelOptions.source, thresholds: try thresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) },
                presetPath: preset, outputDirectory: output, repeats: repeats)
            options.policies = try DemoPolicy.parse(policy)
            options.firstBlockThresholds = try firstBlockThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
            options.magCacheThresholds = try magcacheThresholds.map { t throws(DemoError) in try DemoOptions.parseThresholds(t) }
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
}
