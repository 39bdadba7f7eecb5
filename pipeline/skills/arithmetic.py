"""Spoken arithmetic, parsed into a tiny tree and evaluated exactly (never ``eval``).

"what is 14 times 12", "14 x 12", "15 percent of 80", "square root of 144",
"12 divided by 5", "2 to the power of 10", "5 subtracted from 12", "multiply 6 by 7",
"the square of 5", "5 squared", "half of 30", "a third of 90", "double 8".
Numbers are read by :mod:`.numbers` (digits, words, mixed). Values are exact
:class:`~fractions.Fraction` s; only roots and fractional powers that have no exact
rational result fall back to floats, and the answer then says "about".

The whole request must be one expression with at least one operation; anything left over
("what is 2 plus 2 in binary") means it is not arithmetic and the LLM gets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .numbers import Num, numberize, say_number

# Phrases that may open a calculation; the longest match is removed.
_PREFIXES = (
    ("what", "is"), ("how", "much", "is"), ("calculate",), ("compute",), ("work", "out"),
    ("what", "is", "the", "answer", "to"), ("what", "is", "the", "result", "of"),
    ("what", "does",), ("solve",), ("what", "do", "you", "get", "for"),
)  # fmt: skip
_SUFFIXES = (("equal",), ("equals",), ("make",), ("come", "to"), ("give", "you"))
# Guards against answers nobody can say and exponents that would exhaust memory.
_MAX_EXPONENT = 10_000
_MAX_BITS = 4_000

ADD, SUB, MUL, DIV, POW, PERCENT_OF, OF, SQRT, CBRT, NEG = (
    "plus", "minus", "times", "divided by", "to the power of", "percent of", "of",
    "the square root of", "the cube root of", "minus ",
)  # fmt: skip


class MathError(ValueError):
    """A well-formed question with no answer (division by zero, root of a negative)."""


@dataclass(frozen=True)
class Lit:
    value: Fraction
    text: str | None = None  # said as heard ("a third"), when digits would not do


@dataclass(frozen=True)
class Unary:
    op: str
    arg: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Lit | Unary | Binary


@dataclass(frozen=True)
class Value:
    """A result: exact Fraction, or a float when no exact rational exists."""

    number: Fraction | float

    @property
    def exact(self) -> bool:
        return isinstance(self.number, Fraction)


class _Parser:
    """Recursive descent over words and :class:`Num` tokens; precedence as usual."""

    def __init__(self, tokens: list[str | Num]) -> None:
        self.tokens = tokens
        self.pos = 0

    def accept(self, *phrase: str) -> bool:
        end = self.pos + len(phrase)
        if tuple(self.tokens[self.pos : end]) == phrase:
            self.pos = end
            return True
        return False

    def number(self) -> Num | None:
        if self.pos < len(self.tokens) and isinstance(tok := self.tokens[self.pos], Num):
            self.pos += 1
            return tok
        return None

    def fail(self) -> None:
        raise SyntaxError(self.pos)

    def top(self) -> Node:
        """Verb forms first ("add 3 to 4"), else a plain expression."""
        for verb, joiners, op, swap in (
            ("add", ("to", "and"), ADD, False), ("subtract", ("from",), SUB, True),
            ("multiply", ("by", "and"), MUL, False), ("divide", ("by",), DIV, False),
        ):  # fmt: skip
            if self.accept(verb):
                left = self.expr()
                if not any(self.accept(j) for j in joiners):
                    self.fail()
                right = self.expr()
                return Binary(op, right, left) if swap else Binary(op, left, right)
        for noun, op in (("sum", ADD), ("product", MUL)):
            if self.accept("the", noun, "of") or self.accept(noun, "of"):
                left = self.expr()
                if not self.accept("and"):
                    self.fail()
                return Binary(op, left, self.expr())
        return self.expr()

    def expr(self) -> Node:
        node = self.term()
        while True:
            if self.accept("plus") or self.accept("added", "to"):
                node = Binary(ADD, node, self.term())
            elif self.accept("minus") or self.accept("take", "away"):
                node = Binary(SUB, node, self.term())
            elif self.accept("subtracted", "from"):
                node = Binary(SUB, self.term(), node)
            else:
                return node

    def term(self) -> Node:
        node = self.power()
        while True:
            if self.accept("times") or self.accept("x") or self.accept("multiplied", "by"):
                node = Binary(MUL, node, self.power())
            elif self.accept("divided", "by") or self.accept("over"):
                node = Binary(DIV, node, self.power())
            else:
                return node

    def power(self) -> Node:
        node = self.unary()
        if self.accept("squared"):
            return Binary(POW, node, Lit(Fraction(2)))
        if self.accept("cubed"):
            return Binary(POW, node, Lit(Fraction(3)))
        if (
            self.accept("to", "the", "power", "of")
            or self.accept("raised", "to", "the", "power", "of")
            or self.accept("raised", "to")
            or self.accept("to", "the")
        ):
            exponent = self.unary()
            for ordinal in ("th", "st", "nd", "rd"):
                self.accept(ordinal)
            self.accept("power")
            return Binary(POW, node, exponent)
        return node

    def unary(self) -> Node:
        if self.accept("minus") or self.accept("negative"):
            return Unary(NEG, self.unary())
        self.accept("the")
        if self.accept("square", "root", "of"):
            return Unary(SQRT, self.unary())
        if self.accept("cube", "root", "of"):
            return Unary(CBRT, self.unary())
        if self.accept("square", "of"):
            return Binary(POW, self.unary(), Lit(Fraction(2)))
        if self.accept("cube", "of"):
            return Binary(POW, self.unary(), Lit(Fraction(3)))
        for word, factor in (("double", 2), ("twice", 2), ("triple", 3)):
            if self.accept(word):  # "double 8", "twice 7": said back as "2 times 8"
                return Binary(MUL, Lit(Fraction(factor)), self.unary())
        num = self.number()
        if num is None:
            self.fail()
        if self.accept("percent"):
            # "80 plus 15 percent" means 92 to most people, 80.15 to the grammar: not ours.
            if not self.accept("of"):
                self.fail()
            return Binary(PERCENT_OF, Lit(num.value), self.unary())
        if num.fraction_word and self.accept("of"):
            return Binary(OF, Lit(num.value, num.text), self.unary())
        return Lit(num.value)


def parse(text: str) -> Node | None:
    """The expression in a normalised request, or None when it is not (only) arithmetic."""
    words = text.split()
    for suffix in _SUFFIXES:
        if len(words) > len(suffix) and tuple(words[-len(suffix) :]) == suffix:
            words = words[: -len(suffix)]
            break
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if tuple(words[: len(prefix)]) == prefix:
            words = words[len(prefix) :]
            break
    parser = _Parser(numberize(words))
    try:
        node = parser.top()
    except SyntaxError:
        return None
    if parser.pos != len(parser.tokens) or isinstance(node, Lit):
        return None
    return node


def _root(value: Fraction, n: int) -> Fraction | float:
    """Exact n-th root when the fraction is a perfect power, else a float."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    num = round(magnitude.numerator ** (1 / n)) if n == 3 else math.isqrt(magnitude.numerator)
    den = round(magnitude.denominator ** (1 / n)) if n == 3 else math.isqrt(magnitude.denominator)
    if num**n == magnitude.numerator and den**n == magnitude.denominator:
        return sign * Fraction(num, den)
    return sign * float(magnitude) ** (1 / n)


def _power(base: Fraction | float, exponent: Fraction | float) -> Fraction | float:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        e = int(exponent)
        if abs(e) > _MAX_EXPONENT:
            raise MathError("That number is too big for me to say.")
        if isinstance(base, Fraction):
            if base == 0 and e < 0:
                raise MathError("Dividing by zero has no answer, so I can't work that out.")
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(e) > _MAX_BITS:
                raise MathError("That number is too big for me to say.")
            return base**e
        return base**e
    if base < 0:
        raise MathError("That power of a negative number isn't a real number.")
    try:
        return float(base) ** float(exponent)
    except OverflowError as exc:
        raise MathError("That number is too big for me to say.") from exc


def evaluate(node: Node) -> Fraction | float:
    """Compute the tree; raises :class:`MathError` for questions without an answer."""
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Unary):
        arg = evaluate(node.arg)
        if node.op == NEG:
            return -arg
        if node.op == SQRT:
            if arg < 0:
                raise MathError("The square root of a negative number isn't a real number.")
            return _root(arg, 2) if isinstance(arg, Fraction) else math.sqrt(arg)
        return _root(arg, 3) if isinstance(arg, Fraction) else math.copysign(abs(arg) ** (1 / 3), arg)
    left, right = evaluate(node.left), evaluate(node.right)
    if node.op == ADD:
        return left + right
    if node.op == SUB:
        return left - right
    if node.op in (MUL, OF):
        return left * right
    if node.op == PERCENT_OF:
        return left * right / 100
    if node.op == DIV:
        if right == 0:
            raise MathError("Dividing by zero has no answer, so I can't work that out.")
        return left / right
    return _power(left, right)


def render(node: Node) -> str:
    """The expression as it will be said back: "14 times 12", "the square root of 144"."""
    if isinstance(node, Lit):
        return node.text or say_number(node.value).text
    if isinstance(node, Unary):
        return f"{node.op}{render(node.arg)}" if node.op == NEG else f"{node.op} {render(node.arg)}"
    if node.op == POW and node.right == Lit(Fraction(2)):
        return f"{render(node.left)} squared"
    if node.op == POW and node.right == Lit(Fraction(3)):
        return f"{render(node.left)} cubed"
    return f"{render(node.left)} {node.op} {render(node.right)}"


def answer(text: str) -> str | None:
    """The spoken answer to a normalised arithmetic request, or None if it is not one."""
    node = parse(text)
    if node is None:
        return None
    question = render(node)
    try:
        result = evaluate(node)
        spoken = say_number(result, exact=isinstance(result, Fraction))
    except MathError as exc:
        return str(exc)
    except (OverflowError, ValueError, ZeroDivisionError):  # inf, nan, floats past range
        return "Sorry, I couldn't work that out."
    sentence = f"{question} is {'about ' if spoken.approximate else ''}{spoken.text}."
    return sentence[0].upper() + sentence[1:]
