// Synth: the built-in demo data — seeded instruction tasks with short answers that can be
// graded by exact match (arithmetic, word reversal and sorting, letter counts, key lookup,
// unit conversion, comparisons), easy and hard mixed so that depth matters.
import SortedFormats
import SortedKit

public struct SynthExample: Equatable {
    public var instruction: String
    public var input: String
    public var output: String
    public var task: String
    public var difficulty: Difficulty

    public enum Difficulty: String { case easy, hard }

    /// The example as one Alpaca JSONL line (extra fields "task" and "difficulty" are ignored
    /// by the Alpaca reader).
    public var jsonLine: String {
        "{\"instruction\": \(jsonQuoted(instruction)), \"input\": \(jsonQuoted(input)), \"output\": \(jsonQuoted(output)), "
            + "\"task\": \(jsonQuoted(task)), \"difficulty\": \"\(difficulty.rawValue)\"}"
    }
}

public enum SynthTasks {
    public static let taskNames = ["add", "subtract", "multiply", "compare", "parity", "reverse", "sort_letters",
                                   "count_letter", "lookup", "convert"]

    /// Exact match after trimming surrounding whitespace.
    public static func grade(prediction: String, answer: String) -> Bool {
        prediction.trimmingWhitespace() == answer.trimmingWhitespace()
    }

    /// `train` and `validation` sets: no validation (instruction, input) pair occurs in train.
    /// Deterministic in (count, validationCount, seed, hardFraction).
    public static func generate(trainCount: Int, validationCount: Int, seed: UInt64,
                                hardFraction: Double = 0.5) -> (train: [SynthExample], validation: [SynthExample]) {
        var rng = SplitMix64(seed: seed)
        var seen = Set<String>()
        func draw(_ n: Int, unique: Bool) -> [SynthExample] {
            var out: [SynthExample] = []
            out.reserveCapacity(n)
            var attempts = 0
            while out.count < n {
                let hard = Double(rng.next() >> 11) / Double(1 << 53) < hardFraction
                let e = example(task: taskNames[rng.below(taskNames.count)], hard: hard, rng: &rng)
                let key = e.instruction + "\u{0}" + e.input
                attempts += 1
                if unique {
                    if seen.contains(key) && attempts < 100 * n + 1000 { continue }
                    seen.insert(key)
                } else if seen.contains(key) {
                    continue   // never train on a validation question
                }
                out.append(e)
            }
            return out
        }
        let validation = draw(validationCount, unique: true)
        let train = draw(trainCount, unique: false)
        return (train, validation)
    }

    static let words = [
        "apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest", "garden", "planet",
        "window", "silver", "butter", "rocket", "shadow", "island", "bridge", "castle", "dragon", "orange",
        "pencil", "summer", "winter", "yellow", "purple", "basket", "button", "carpet", "mirror", "needle",
        "pocket", "rabbit", "saddle", "tunnel", "wallet", "zipper", "anchor", "beacon", "cactus", "dinner",
        "engine", "falcon", "guitar", "hammer", "jacket", "kitten", "ladder", "magnet", "napkin", "oyster",
        "parrot", "quartz", "ribbon", "sailor", "teapot", "umpire", "violin", "walnut", "cat", "dog", "sun",
        "map", "cup", "hat", "pen", "box", "owl", "bee", "fox", "egg", "ice", "jar", "key", "leaf", "moon",
        "nest", "pear", "rose", "ship", "tree", "wolf", "yarn", "book", "frog", "lamp", "milk", "bread",
        "chair", "table", "horse", "sheep", "grape", "peach", "melon", "bell", "drum", "kite", "ring",
        "banana", "cherry", "tomato", "potato", "blanket", "library", "compass", "lantern", "harvest",
        "octopus", "pelican", "penguin", "volcano", "whisper", "journey", "captain", "diamond", "feather",
    ]
    static let sentences = [
        "the cat sat on the mat", "a big brown bear ate berries", "she sells sea shells by the shore",
        "rain falls softly on the green hills", "the old man walked to the market", "seven swans swam south",
        "bright stars shine above the quiet town", "peter picked a peck of pickled peppers",
        "the river runs past the mill", "my friend baked a banana bread",
    ]

    static func example(task: String, hard: Bool, rng: inout SplitMix64) -> SynthExample {
        let d: SynthExample.Difficulty = hard ? .hard : .easy
        func n(_ lo: Int, _ hi: Int) -> Int { lo + rng.below(hi - lo + 1) }
        func word(_ minLength: Int, _ maxLength: Int) -> String {
            let candidates = words.filter { $0.count >= minLength && $0.count <= maxLength }
            return candidates[rng.below(candidates.count)]
        }
        func make(_ instruction: String, _ input: String = "", _ output: String) -> SynthExample {
            SynthExample(instruction: instruction, input: input, output: output, task: task, difficulty: d)
        }
        switch task {
        case "add":
            let a = hard ? n(100, 9999) : n(0, 99), b = hard ? n(100, 9999) : n(0, 99)
            return make("What is \(a) + \(b)?", "", String(a + b))
        case "subtract":
            let a = hard ? n(100, 9999) : n(0, 99), b = hard ? n(100, 9999) : n(0, 99)
            return make("What is \(a) - \(b)?", "", String(a - b))
        case "multiply":
            let a = hard ? n(12, 99) : n(0, 12), b = hard ? n(12, 99) : n(0, 12)
            return make("What is \(a) * \(b)?", "", String(a * b))
        case "compare":
            if hard {
                var values: [Int] = []
                while values.count < 5 { let v = n(0, 999); if !values.contains(v) { values.append(v) } }
                return make("Which number is the largest?", values.map(String.init).joined(separator: ", "), String(values.max()!))
            }
            var a = n(0, 99), b = n(0, 99)
            while a == b { b = n(0, 99); a = n(0, 99) }
            return make("Which is larger: \(a) or \(b)?", "", String(max(a, b)))
        case "parity":
            let v = hard ? n(1000, 999_999) : n(0, 99)
            return make("Is \(v) even or odd?", "", v % 2 == 0 ? "even" : "odd")
        case "reverse":
            let w = hard ? word(6, 8) : word(3, 4)
            return make("Reverse the letters of the word.", w, String(w.reversed()))
        case "sort_letters":
            let w = hard ? word(6, 8) : word(3, 4)
            return make("Sort the letters of the word alphabetically.", w, String(w.sorted()))
        case "count_letter":
            let text = hard ? sentences[rng.below(sentences.count)] : word(4, 7)
            let letters = Array(Set(text.filter { $0 != " " })).sorted()
            let letter = letters[rng.below(letters.count)]
            return make("How many times does the letter \"\(letter)\" appear in the text?", text,
                        String(text.filter { $0 == letter }.count))
        case "lookup":
            let size = hard ? 8 : 3
            var keys: [String] = []
            while keys.count < size { let k = word(3, 6); if !keys.contains(k) { keys.append(k) } }
            let values = keys.map { _ in n(0, 99) }
            let i = rng.below(size)
            let table = zip(keys, values).map { "\($0)=\($1)" }.joined(separator: ", ")
            return make("What is the value of \(keys[i])?", table, String(values[i]))
        default: // convert
            if hard {
                let conversions: [(String, String, Int)] = [("hours", "seconds", 3600), ("days", "minutes", 1440),
                                                            ("kilometers", "centimeters", 100_000), ("weeks", "hours", 168)]
                let (from, to, factor) = conversions[rng.below(conversions.count)]
                let v = n(2, 30)
                return make("Convert \(v) \(from) to \(to).", "", String(v * factor))
            }
            let conversions: [(String, String, Int)] = [("kilometers", "meters", 1000), ("minutes", "seconds", 60),
                                                        ("hours", "minutes", 60), ("meters", "centimeters", 100),
                                                        ("kilograms", "grams", 1000)]
            let (from, to, factor) = conversions[rng.below(conversions.count)]
            let v = n(1, 9)
            return make("Convert \(v) \(from) to \(to).", "", String(v * factor))
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
