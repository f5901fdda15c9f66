import ArgumentParser
import Foundation
import Logging
import TeaCacheDemo

/// `teacache presets`: every built-in preset `--preset` (and `--model`) accepts by name.
struct PresetsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presets",
        abstract: "List the built-in presets by name, with their family, suggested thresholds and source.",
        discussion: "`teacache demo --preset NAME` runs one beside the family's default; `--model NAME` picks its family "
            + "with it as the default. MagCache ratios are named magcache:<name>."
    )

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        print(Self.render(PresetCatalog.entries))
    }

    /// The table: name, kind, family, suggested thresholds, source.
    static func render(_ entries: [PresetCatalog.Entry]) -> String {
        let rows = [["name", "kind", "family", "thresholds (→ published speedup)", "source"]]
            + entries.map { [$0.reference, $0.preset.kind, $0.family ?? "(no port)", $0.suggestedThresholds, $0.source] }
        let widths = (0..<4).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            (0..<4).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                + "  " + row[4]
        }.joined(separator: "\n")
    }
}
