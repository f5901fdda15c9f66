import ArgumentParser
import DiTModels
import Foundation
import TeaCacheDemo

/// The `teacache` command-line tool.
@main
struct TeaCacheCommand: AsyncParsableCommand {
    /// The tool's version (`teacache --version`).
    static let version = "0.1.0 (models and cache hooks checked against diffusers 0.42.1)"

    static let configuration = CommandConfiguration(
        commandName: "teacache",
        abstract: "TeaCache for diffusion transformers on the CPU.",
        version: version,
        subcommands: [InspectCommand.self, VerifyCommand.self, BenchCommand.self, DemoCommand.self, CalibrateCommand.self,
                      PresetsCommand.self, QuantizeCommand.self]
    )

    /// Parses and runs the command line; every error is printed as `error: …` and ends the process with
    /// one status per class: ``CLIErrors/usageStatus`` for the command line, 1 for failures while running.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var command: any ParsableCommand
        do { command = try parseAsRoot(arguments) } catch {
            if exitCode(for: error) == .success { exit(withError: error) }   // --help, --version
            CLIErrors.usage(message(for: error), helpHint: helpHint(for: error))
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch let error as ValidationError {
            CLIErrors.usage(error.message, helpHint: helpHint(for: error))
        } catch {
            // ArgumentParser's own requests (help, version) surface here from its built-in commands.
            if exitCode(for: error) == .success { exit(withError: error) }
            if error is DemoError || error is ModelLoadError { CLIErrors.exit(error, log: nil) }
            if exitCode(for: error) == .validationFailure { CLIErrors.usage(message(for: error), helpHint: helpHint(for: error)) }
            CLIErrors.exit(error, log: nil)
        }
    }

    /// "see 'teacache demo --help'": the help line ArgumentParser's full message ends with.
    static func helpHint(for error: any Error) -> String {
        let full = fullMessage(for: error)
        guard let line = full.split(separator: "\n").last(where: { $0.contains("--help") }),
              let start = line.firstIndex(of: "'"), let end = line.lastIndex(of: "'"), start < end else {
            return "see 'teacache --help'"
        }
        return "see \(line[start...end])"
    }
}
