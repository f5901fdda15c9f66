import ArgumentParser

/// The `teacache` command-line tool.
@main
struct TeaCacheCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teacache",
        abstract: "TeaCache for diffusion transformers on the CPU.",
        subcommands: [InspectCommand.self, VerifyCommand.self, BenchCommand.self, DemoCommand.self, CalibrateCommand.self,
                      PresetsCommand.self]
    )
}
