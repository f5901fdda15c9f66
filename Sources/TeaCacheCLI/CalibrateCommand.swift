import ArgumentParser
import Foundation
import Logging
import TeaCacheDemo

/// `teacache calibrate`: fits the rescaling polynomial on uncached runs and writes a preset JSON.
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Fit TeaCache coefficients on uncached runs over several seeds and write a preset JSON.",
        discussion: "The preset loads with TeaCachePreset.load(from:) and `teacache demo --preset`. "
            + "Fits with R² below \(CalibrationRunner.minimumRSquared) are refused unless --force is given."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Number of input seeds (uncached runs).")
    var seeds: Int = 3

    @Option(help: "What to calibrate: teacache (rescaling coefficients) or magcache (magnitude ratios).")
    var policy: String = "teacache"

    @Flag(help: "Accept a fit whose R² is below the floor.")
    var force = false

    @Option(help: "Where to write the preset JSON.")
    var output: String = "teacache-output/calibrated-preset.json"

    @Option(help: "The preset's name (default: <model>-calibrated).")
    var name: String?

    @Option(parsing: .unconditional, help: "The preset's default threshold (default: the family preset's).")
    var defaultThreshold: Double?

    @Option(parsing: .unconditional, help: "The R² floor below which fits are refused without --force.")
    var minimumRSquared: Double = CalibrationRunner.minimumRSquared

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = logging.logger("calibrate")
        let start = Date()
        do {
            let options = CalibrationOptions(source: modelOptions.source, seeds: seeds, force: force, outputPath: output,
                                             name: name, defaultThreshold: defaultThreshold,
                                             minimumRSquared: minimumRSquared)
            try options.validate()
            modelOptions.applyThreads()
            modelOptions.logSource(log)
            switch policy {
            case "teacache":
                let report = try CalibrationRunner.run(options) { ProgressBar.standardError(label: $0) }
                print(report.render())
                log.info("calibration done", metadata: ["elapsed": "\(secondsSince(start))", "preset": "\(report.outputPath)"])
            case "magcache":
                let report = try CalibrationRunner.runMagCache(options) { ProgressBar.standardError(label: $0) }
                print(report.render())
                log.info("calibration done", metadata: ["elapsed": "\(secondsSince(start))", "preset": "\(report.outputPath)"])
            default:
                throw DemoError.invalidOption("--policy \(policy) is not teacache or magcache")
            }
        } catch {
            CLIErrors.exit(error, log: log)
        }
    }
}
