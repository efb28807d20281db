"""Chat prompts whose greedy replies become self-distillation data.

At inference an MTP head predicts continuations of the model's *own* text, so the
best training data is the target's own greedy replies to prompts like the ones
users send. These are built from small word lists (code, stories, questions) and
kept disjoint from the bench prompts (engine/bench.py), which measure the result.
"""

from __future__ import annotations

import random

_CODE_TASKS = (
    "reverses a linked list",
    "checks whether a number is prime",
    "counts the words in a text file",
    "merges two sorted lists",
    "computes the nth Fibonacci number with memoization",
    "parses a CSV file and prints the average of a column",
    "finds the longest common prefix of a list of strings",
    "validates an email address with a regular expression",
    "implements a stack with push, pop and peek",
    "implements a queue using two stacks",
    "sorts a list with quicksort",
    "sorts a list with merge sort",
    "converts a Roman numeral to an integer",
    "flattens a nested list",
    "removes duplicates from a list while keeping the order",
    "reads a JSON file and prints its keys",
    "downloads a web page and counts its links",
    "implements a simple LRU cache",
    "finds all anagrams of a word in a list",
    "rotates a matrix by 90 degrees",
    "checks whether parentheses in a string are balanced",
    "implements breadth-first search on a graph",
    "implements Dijkstra's shortest path algorithm",
    "generates all permutations of a string",
    "computes the greatest common divisor of two numbers",
    "converts Celsius to Fahrenheit for a list of values",
    "implements a simple bank account class with deposit and withdraw",
    "counts the frequency of each character in a string",
    "finds the second largest number in a list",
    "implements a binary search on a sorted array",
    "renames all files in a folder to lowercase",
    "implements a tic-tac-toe board with a winner check",
    "simulates rolling two dice a thousand times",
    "implements a to-do list class with add, remove and list methods",
    "computes the factorial of a number iteratively and recursively",
    "checks whether two strings are rotations of each other",
    "implements a simple tokenizer for arithmetic expressions",
    "evaluates an expression in reverse Polish notation",
    "generates a random password of a given length",
    "finds the most common word in a paragraph",
)
_LANGUAGES = ("Python", "JavaScript", "C", "Java", "Rust", "Go", "TypeScript", "C++")
_WEB_APPS = (
    "a snake game",
    "a pong game",
    "a breakout game",
    "a memory card matching game",
    "a calculator",
    "a stopwatch",
    "a to-do list app",
    "a drawing canvas",
    "a countdown timer",
    "a color picker",
    "a tic-tac-toe game",
    "an image gallery with thumbnails",
    "a quiz app",
    "a weather dashboard layout",
    "a login form with validation",
    "a space invaders game",
    "a 2048 game",
    "an analog clock",
    "a markdown previewer",
    "a piano keyboard",
)
_STORY_SUBJECTS = (
    "a robot who learns to paint",
    "a dragon afraid of fire",
    "a girl who finds a map in her attic",
    "the last tree in a city",
    "a cat who becomes mayor",
    "two friends lost in a forest",
    "a baker who bakes magical bread",
    "an astronaut who hears music in space",
    "a boy who can talk to birds",
    "a haunted library",
    "a detective solving a mystery at the seaside",
    "a time traveler stuck in the past",
    "a small village preparing for winter",
    "a pirate searching for a lost island",
    "a knight who refuses to fight",
    "a scientist who shrinks herself",
    "an old clockmaker and his apprentice",
    "a fox and a rabbit who become friends",
    "a musician who loses her voice",
    "a city where it always rains",
)
_STORY_FORMS = (
    "Write a short story about {}.",
    "Tell me a bedtime story about {}.",
    "Write a fairy tale about {}.",
    "Write the opening of a novel about {}.",
)
_CONCEPTS = (
    "photosynthesis",
    "the water cycle",
    "inflation",
    "machine learning",
    "black holes",
    "the immune system",
    "compound interest",
    "climate change",
    "blockchain",
    "the theory of evolution",
    "gravity",
    "democracy",
    "recursion in programming",
    "how vaccines work",
    "the internet",
    "plate tectonics",
    "supply and demand",
    "quantum computing",
    "the French Revolution",
    "renewable energy",
    "how a car engine works",
    "DNA",
    "object-oriented programming",
    "the stock market",
    "how airplanes fly",
    "the Roman Empire",
    "nutrition and a balanced diet",
    "encryption",
    "the solar system",
    "sleep and why we need it",
)
_CHAT_FORMS = (
    "Explain {} in simple terms.",
    "What is {}? Give a short answer.",
    "Can you explain {} to a ten-year-old?",
    "Give me three interesting facts about {}.",
    "What are the pros and cons of {}?",
)
_HOWTO = (
    "improve my sleep",
    "learn a new language quickly",
    "start running as a beginner",
    "save money on groceries",
    "prepare for a job interview",
    "write a good cover letter",
    "make a simple pasta sauce",
    "take care of a houseplant",
    "stay focused while studying",
    "plan a weekend trip",
    "organize my email inbox",
    "learn to play the guitar",
    "reduce stress at work",
    "make friends in a new city",
    "set up a Python virtual environment",
    "use git branches",
    "debug a Python program",
    "write unit tests",
)
_MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "csv",
    "dataclasses",
    "datetime",
    "functools",
    "itertools",
    "json",
    "logging",
    "math",
    "multiprocessing",
    "os",
    "pathlib",
    "pickle",
    "random",
    "re",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "threading",
    "time",
    "typing",
    "unittest",
    "urllib",
    "uuid",
    "zipfile",
    "heapq",
    "bisect",
    "shutil",
    "socket",
    "struct",
    "textwrap",
    "enum",
    "contextlib",
    "hashlib",
    "tempfile",
    "glob",
    "decimal",
)


def training_prompts(seed: int = 0) -> list[tuple[str, str]]:
    """(kind, user message) pairs: code, story and chat, shuffled deterministically."""
    out: list[tuple[str, str]] = []
    rng = random.Random(seed)
    for i, task in enumerate(_CODE_TASKS):
        for lang in rng.sample(_LANGUAGES, 3 if i % 2 else 2):
            out.append(("code", f"Write a {lang} function that {task}."))
    for app in _WEB_APPS:
        out.append(("code", f"Write {app} in HTML, CSS and JavaScript."))
        out.append(("code", f"Create {app} as a single HTML file."))
    for subject in _STORY_SUBJECTS:
        for form in rng.sample(_STORY_FORMS, 2):
            out.append(("story", form.format(subject)))
    for concept in _CONCEPTS:
        for form in rng.sample(_CHAT_FORMS, 2):
            out.append(("chat", form.format(concept)))
    for howto in _HOWTO:
        out.append(("chat", f"How do I {howto}?"))
        out.append(("chat", f"Give me some tips to {howto}."))
    for module in _MODULES:
        out.append(("code", f"What is the Python {module} module for? Show a short example."))
    rng.shuffle(out)
    return out
