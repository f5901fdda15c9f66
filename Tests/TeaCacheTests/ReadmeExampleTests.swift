import Testing
@testable import TeaCache

// The README's code blocks themselves are compiled and run by Tests/ReadmeTests (a separate consumer
// package); this checks the sentence `print(trace.summary)` shows there.
@Suite struct ReadmeExampleTests {
    @Test func summaryPrintsAsASentence() {
        let s = CacheTrace.Summary(calls: 28, computed: 12, skipped: 16, longestSkipStreak: 3,
                                      predictedSpeedup: 28.0 / 12.0)
        #expect("\(s)" == "12 of 28 calls computed (2.33× fewer), 16 skipped, longest skip streak 3")
        let none = CacheTrace.Summary(calls: 0, computed: 0, skipped: 0, longestSkipStreak: 0, predictedSpeedup: 1)
        #expect("\(none)" == "0 of 0 calls computed, 0 skipped, longest skip streak 0")
    }
}
