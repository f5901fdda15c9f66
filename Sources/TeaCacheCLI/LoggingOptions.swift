import ArgumentParser
import Foundation
import Logging

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--log-level`, shared by every subcommand: diagnostics (what is loaded, from where, how long it took)
/// go to stderr through swift-log, so stdout keeps only the command's result.
///
/// Each command makes its own `Logger` from these options; nothing is bootstrapped globally.
struct LoggingOptions: ParsableArguments {
    @Option(name: .customLong("log-level"),
            help: "Diagnostics on stderr: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")).")
    var logLevel: Logger.Level = .warning

    /// A logger labelled `teacache.<command>` writing to stderr at the chosen level.
    func logger(_ command: String) -> Logger {
        var logger = Logger(label: "teacache.\(command)") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
        return logger
    }
}

/// Wall-clock seconds since `start`, for log lines.
func secondsSince(_ start: Date) -> String { String(format: "%.2f s", Date().timeIntervalSince(start)) }
