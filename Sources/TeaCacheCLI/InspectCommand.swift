import ArgumentParser
import Foundation
import Logging
import Safetensors
import TeaCacheDemo

/// `teacache inspect FILE`: validates a safetensors file and lists its tensors.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Validate a .safetensors file and list its tensors (name, dtype, shape), sorted by name."
    )

    @Argument(help: "Path to a .safetensors file.")
    var file: String

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = logging.logger("inspect")
        log.info("opening", metadata: ["file": "\(file)"])
        let safetensors: SafetensorsFile
        do {
            safetensors = try SafetensorsFile(path: file)
        } catch {
            // File errors already name the path; validation errors do not.
            if case .fileUnreadable = error { CLIErrors.exit(DemoError.invalidOption(error.description + "; give the path of a .safetensors file"), log: log) }
            CLIErrors.exit(DemoError.io("\(file): \(error.description); give a valid .safetensors file"), log: log)
        }
        let lines = safetensors.summaryLines()
        log.info("valid safetensors file", metadata: ["lines": "\(lines.count)"])
        for line in lines { print(line) }
    }
}
