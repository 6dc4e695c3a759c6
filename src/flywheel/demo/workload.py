"""A seeded, realistic customer-service workload for the demo (and for experiments).

**Chat logs** (``llm_job``): the support assistant of an online outdoor-gear shop. Each record
is an OpenAI ``chat.completions`` request (system prompt, the user's turn, sometimes a short
earlier exchange, six tools) and the answer of a large production model: a tool call with its
arguments as a JSON string, or, for about 15 % of the traffic, a short text answer
(greetings, thanks, policy questions, requests that lack the order number). Users phrase the
same intent many ways; ids, names, amounts, products and addresses are drawn from pools, so
almost every request is distinct (the dataset pipeline drops exact duplicates).

The reference answers are what a strong model would produce: argument values are copied from
the user's words (ids, amounts, address parts, product phrases), and free-text reasons map to
the tool's enum. That makes the workload learnable by a small model, which is the point of
the demo: the fine-tuned candidate should catch up with the production model.

**Retrieval logs** (``embedding_job``): the support agents' searches of the help centre
(:data:`KNOWLEDGE_BASE`: 20 general articles and ten near-identical pages per product line,
160 passages), the five passages the production retriever returned for each, and the passage
the answer used. Agents write in the team's shorthand: internal product codes
(:data:`PRODUCT_CODES`, never printed on the pages) and ticket abbreviations ("rma", "wty",
"b/o eta"). A general-purpose embedder finds the right kind of page but not the right
product's, and the production retriever often ranks another product's page first; each code
always means the same product, so a retriever fine-tuned on the logs learns the codes and
ranks the right passage first on held-out queries worded differently.

Everything is deterministic for a given ``seed`` and ``now_ms``: the same arguments give the
same records, byte for byte through :func:`to_jsonl_lines`.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

CLIENT_ID = "acme-outfitters"
CHAT_WORKLOAD_ID = "customer-service"
RETRIEVAL_WORKLOAD_ID = "help-center-search"
PRODUCTION_MODEL = "meta/llama-3.3-70b-instruct"
DAY_MS = 86_400_000

SYSTEM_PROMPT = (
    "You are Ava, the customer-service assistant of Acme Outfitters, an online outdoor-gear "
    "shop. Use the tools to look up, change, cancel or refund orders, track parcels and find "
    "products. Ask for the order number when it is missing. Answer other questions briefly "
    "and politely."
)

Json = dict[str, Any]


def _tool(name: str, description: str, properties: Json, required: list[str]) -> Json:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_ORDER_ID = {"type": "string", "description": "Order number, e.g. 482130"}
CANCEL_REASONS = ("changed_mind", "found_cheaper", "ordered_by_mistake", "too_slow")
REFUND_REASONS = ("damaged", "wrong_item", "not_as_described", "missing_parts")

#: The six tools every request offers (compact schemas: small models read them in full).
TOOLS: list[Json] = [
    _tool("get_order_status", "Status of an order.", {"order_id": _ORDER_ID}, ["order_id"]),
    _tool(
        "cancel_order",
        "Cancel an order that has not shipped.",
        {
            "order_id": _ORDER_ID,
            "reason": {"type": "string", "enum": list(CANCEL_REASONS)},
        },
        ["order_id"],
    ),
    _tool(
        "track_shipment",
        "Where a parcel is.",
        {"tracking_number": {"type": "string"}},
        ["tracking_number"],
    ),
    _tool(
        "update_shipping_address",
        "Change where an order ships.",
        {
            "order_id": _ORDER_ID,
            "street": {"type": "string"},
            "city": {"type": "string"},
            "postal_code": {"type": "string"},
        },
        ["order_id", "street", "city", "postal_code"],
    ),
    _tool(
        "request_refund",
        "Refund all or part of an order.",
        {
            "order_id": _ORDER_ID,
            "amount": {"type": "number", "description": "In USD"},
            "reason": {"type": "string", "enum": list(REFUND_REASONS)},
        },
        ["order_id", "amount", "reason"],
    ),
    _tool(
        "search_products",
        "Search the catalogue.",
        {"query": {"type": "string"}, "max_price": {"type": "number", "description": "USD"}},
        ["query"],
    ),
]
TOOL_NAMES = tuple(t["function"]["name"] for t in TOOLS)

# ---- slot pools ------------------------------------------------------------------------

_STREETS = (
    "Maple Avenue", "Oak Street", "Pine Road", "Cedar Lane", "Elm Street", "Birch Way",
    "Lakeview Drive", "Hillcrest Road", "Sunset Boulevard", "River Road", "Park Avenue",
    "Mill Street", "Harbor Way", "Meadow Lane", "Forest Drive", "Church Street",
)  # fmt: skip
_CITIES = (
    ("Portland", "97205"), ("Seattle", "98101"), ("Denver", "80202"), ("Austin", "78701"),
    ("Boston", "02108"), ("Chicago", "60601"), ("Boulder", "80302"), ("Madison", "53703"),
    ("Phoenix", "85004"), ("Atlanta", "30303"), ("Salt Lake City", "84101"),
    ("Minneapolis", "55401"), ("San Diego", "92101"), ("Burlington", "05401"),
    ("Asheville", "28801"), ("Bend", "97701"),
)  # fmt: skip
_PRODUCTS = (
    "rain jacket", "hiking boots", "trail running shoes", "sleeping bag", "camping stove",
    "two-person tent", "down vest", "trekking poles", "headlamp", "water filter",
    "climbing harness", "fleece jacket", "wool socks", "daypack", "insulated bottle",
    "camp chair", "kayak paddle", "bike helmet", "ski gloves", "merino base layer",
)  # fmt: skip
_NAMES = (
    "Maria", "James", "Priya", "Chen", "Fatima", "Lucas", "Aisha", "Noah", "Sofia",
    "Daniel", "Yuki", "Omar", "Emma", "Mateo", "Grace", "Ivan",
)  # fmt: skip
_OPENERS = (
    "", "", "", "", "Hi, ", "Hello, ", "Hey, ", "Hi there! ", "Good morning. ",
    "Hello Ava, ", "Quick question: ", "Hi, this is {name}. ",
)  # fmt: skip
_CLOSERS = ("", "", "", "", " Thanks!", " Thank you.", " Thanks in advance.", " Please help.")

_CANCEL_PHRASES: dict[str, tuple[str, ...]] = {
    "changed_mind": ("I changed my mind", "I don't need it anymore", "I no longer need it"),
    "found_cheaper": ("I found it cheaper elsewhere", "I saw a better price somewhere else"),
    "ordered_by_mistake": ("I ordered it by mistake", "I placed it by accident"),
    "too_slow": ("it is taking too long", "the delivery is too slow"),
}
_REFUND_PHRASES: dict[str, tuple[str, ...]] = {
    "damaged": ("it arrived damaged", "it was broken when it arrived", "the item came torn"),
    "wrong_item": ("you sent the wrong item", "I received a different product"),
    "not_as_described": ("it is not as described", "it looks nothing like the photos"),
    "missing_parts": ("parts were missing", "it came with pieces missing"),
}

# ---- phrasing templates ----------------------------------------------------------------
# Slots: {order} order id, {tracking}, {street} {city} {zip}, {amount}, {why} a reason
# phrase, {product}, {price}.

_STATUS = (
    "Where is my order {order}?",
    "What's the status of order {order}?",
    "Can you check on order #{order} for me?",
    "has order {order} shipped yet",
    "I placed order {order} last week and haven't heard anything. What's going on?",
    "Any update on my order number {order}?",
    "Is order {order} on its way?",
    "order {order} status please",
    "When will order #{order} arrive?",
    "Could you look up order {order}?",
)
_CANCEL_WITH_REASON = (
    "Please cancel order {order}, {why}.",
    "I want to cancel my order {order} because {why}.",
    "Cancel order #{order} please. {Why}.",
    "{Why}, so please cancel order {order}.",
    "Can you cancel order {order}? {Why}.",
    "cancel {order} - {why}",
)
_CANCEL_NO_REASON = (
    "Please cancel order {order}.",
    "I need to cancel order #{order}.",
    "Can you cancel my order {order}?",
    "cancel order {order} asap",
)
_TRACK = (
    "Where is my package? The tracking number is {tracking}.",
    "Can you track {tracking} for me?",
    "Tracking number {tracking} hasn't moved in days. Where is it?",
    "track shipment {tracking}",
    "What's the latest on parcel {tracking}?",
    "My tracking number is {tracking}, can you tell me where it is?",
    "Has package {tracking} been delivered?",
)
_ADDRESS = (
    "Please ship order {order} to {street}, {city} {zip} instead.",
    "I moved. Can you change the address for order {order} to {street}, {city}, {zip}?",
    "Update the shipping address of order #{order}: {street}, {city} {zip}.",
    "Can order {order} go to {street}, {city} {zip}? That's my new address.",
    "new address for {order}: {street}, {city} {zip}",
    "I need order {order} delivered to {street} in {city}, postal code {zip}.",
)
_REFUND = (
    "I'd like a refund of ${amount} for order {order}, {why}.",
    "Order {order}: {why}. Please refund ${amount}.",
    "Can I get ${amount} back on order #{order}? {Why}.",
    "{Why}, so I want a refund of {amount} dollars for order {order}.",
    "refund {amount} usd on order {order}, {why}",
    "Please refund ${amount} to me for order {order} because {why}.",
)
_SEARCH_PRICE = (
    "Do you have a {product} under ${price}?",
    "I'm looking for a {product} for less than ${price}.",
    "Show me {product} options below {price} dollars.",
    "any {product} under {price} bucks?",
    "Can you find me a {product}? My budget is ${price}.",
)
_SEARCH = (
    "Do you sell a {product}?",
    "I'm looking for a {product}.",
    "Can you recommend a good {product}?",
    "show me your {product} selection",
    "What kind of {product} do you carry?",
)

# Text answers: (user phrasings, production answers).
_CHITCHAT: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Hi!", "Hello there", "Hey Ava", "Good morning!", "hi, anyone there?", "Hello?"),
        ("Hello! How can I help you today?", "Hi! What can I do for you today?"),
    ),
    (
        ("Thanks, that's all.", "thank you so much!", "Great, thanks for your help.",
         "perfect, thx"),
        ("You're welcome! Have a great day.", "Happy to help. Enjoy your gear!"),
    ),
    (
        ("What is your return policy?", "How long do I have to return something?",
         "Can I return items I bought on sale?"),
        ("You can return unused items within 30 days of delivery for a full refund, "
         "sale items included.",),
    ),
    (
        ("How much is shipping?", "Do you offer free shipping?",
         "What does delivery cost?"),
        ("Shipping is free on orders over $50; otherwise it is a flat $5.99.",),
    ),
    (
        ("What payment methods do you accept?", "Can I pay with PayPal?",
         "Do you take Apple Pay?"),
        ("We accept all major credit cards, PayPal, Apple Pay and Acme gift cards.",),
    ),
    (
        ("Are you a real person?", "Am I talking to a bot?", "is this a human?"),
        ("I'm Ava, Acme Outfitters' virtual assistant. I can hand you over to a person "
         "if you prefer.",),
    ),
    (
        ("What are your customer service hours?", "When is your support team available?",
         "Can I call you on the weekend?"),
        ("Our support team is available by phone every day from 8 am to 8 pm Eastern.",),
    ),
    (
        ("I want to cancel my order.", "Where is my order?", "I need a refund.",
         "Can you change my shipping address?", "My order hasn't arrived."),
        ("I can help with that. What is your order number?",
         "Sure, could you share the order number?"),
    ),
)  # fmt: skip

_HISTORY = (
    ("Hi!", "Hello! How can I help you today?"),
    ("Hello, I have a question about an order.", "Of course! What can I help you with?"),
    ("hey", "Hi! What can I do for you today?"),
)


@dataclass(frozen=True)
class _Turn:
    user: str
    calls: tuple[tuple[str, Json], ...]  # (tool name, arguments); empty for a text answer
    answer: str | None = None
    #: Slot values whose case matters (addresses, tracking numbers): never lower-cased.
    case_sensitive: bool = False


def _order_id(rng: random.Random) -> str:
    return str(rng.randint(100_000, 999_999))


def _tracking(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return "1Z" + "".join(rng.choice(alphabet) for _ in range(8))


def _amount(rng: random.Random) -> tuple[str, float | int]:
    if rng.random() < 0.4:
        whole = rng.choice((15, 20, 25, 30, 40, 45, 50, 60, 75, 80, 90, 120, 150))
        return str(whole), whole
    value = rng.randint(500, 25_000) / 100
    return f"{value:.2f}", value


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, slots: dict[str, str]) -> str:
    if "why" in slots:
        slots = {**slots, "Why": _capitalise(slots["why"])}
    return template.format(**slots)


def _status(rng: random.Random) -> _Turn:
    if rng.random() < 0.08:  # two orders in one message: parallel calls
        a, b = _order_id(rng), _order_id(rng)
        text = rng.choice(
            ("What's the status of orders {a} and {b}?", "Can you check orders {a} and {b}?")
        ).format(a=a, b=b)
        return _Turn(
            text, (("get_order_status", {"order_id": a}), ("get_order_status", {"order_id": b}))
        )
    order = _order_id(rng)
    return _Turn(
        _fill(rng.choice(_STATUS), {"order": order}), (("get_order_status", {"order_id": order}),)
    )


def _cancel(rng: random.Random) -> _Turn:
    order = _order_id(rng)
    if rng.random() < 0.3:
        text = _fill(rng.choice(_CANCEL_NO_REASON), {"order": order})
        return _Turn(text, (("cancel_order", {"order_id": order}),))
    reason = rng.choice(CANCEL_REASONS)
    why = rng.choice(_CANCEL_PHRASES[reason])
    text = _fill(rng.choice(_CANCEL_WITH_REASON), {"order": order, "why": why})
    return _Turn(text, (("cancel_order", {"order_id": order, "reason": reason}),))


def _track(rng: random.Random) -> _Turn:
    number = _tracking(rng)
    text = _fill(rng.choice(_TRACK), {"tracking": number})
    return _Turn(text, (("track_shipment", {"tracking_number": number}),), case_sensitive=True)


def _address(rng: random.Random) -> _Turn:
    order = _order_id(rng)
    street = f"{rng.randint(1, 999)} {rng.choice(_STREETS)}"
    city, zip_code = rng.choice(_CITIES)
    slots = {"order": order, "street": street, "city": city, "zip": zip_code}
    args = {"order_id": order, "street": street, "city": city, "postal_code": zip_code}
    text = _fill(rng.choice(_ADDRESS), slots)
    return _Turn(text, (("update_shipping_address", args),), case_sensitive=True)


def _refund(rng: random.Random) -> _Turn:
    order = _order_id(rng)
    said, amount = _amount(rng)
    reason = rng.choice(REFUND_REASONS)
    why = rng.choice(_REFUND_PHRASES[reason])
    text = _fill(rng.choice(_REFUND), {"order": order, "amount": said, "why": why})
    args = {"order_id": order, "amount": amount, "reason": reason}
    return _Turn(text, (("request_refund", args),))


def _search(rng: random.Random) -> _Turn:
    product = rng.choice(_PRODUCTS)
    if rng.random() < 0.6:
        price = rng.choice((30, 40, 50, 60, 75, 80, 100, 120, 150, 200, 250))
        text = _fill(rng.choice(_SEARCH_PRICE), {"product": product, "price": str(price)})
        return _Turn(text, (("search_products", {"query": product, "max_price": price}),))
    text = _fill(rng.choice(_SEARCH), {"product": product})
    return _Turn(text, (("search_products", {"query": product}),))


def _chitchat(rng: random.Random) -> _Turn:
    users, answers = rng.choice(_CHITCHAT)
    return _Turn(rng.choice(users), (), rng.choice(answers))


#: Intent mix of the tool-calling traffic (weights), before the text-answer share.
_INTENTS: tuple[tuple[Callable[[random.Random], _Turn], float], ...] = (
    (_status, 0.26),
    (_track, 0.18),
    (_cancel, 0.16),
    (_refund, 0.16),
    (_address, 0.12),
    (_search, 0.12),
)


_PRONOUN_I = re.compile(r"I\b")


def _decorate(rng: random.Random, turn: _Turn) -> str:
    """Vary the wording around the request: openers, closers, all-lower-case typing."""
    opener = rng.choice(_OPENERS).format(name=rng.choice(_NAMES))
    body = turn.user
    if opener and body[:1].isupper() and not _PRONOUN_I.match(body):
        body = body[:1].lower() + body[1:]
    out = opener + body + rng.choice(_CLOSERS)
    if rng.random() < 0.12 and not turn.case_sensitive:
        out = out.lower()
    return out


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _chat_record(
    rng: random.Random, turn: _Turn, *, client_id: str, workload_id: str, timestamp: int
) -> Json:
    messages: list[Json] = [{"role": "system", "content": SYSTEM_PROMPT}]
    if rng.random() < 0.1:
        hello, reply = rng.choice(_HISTORY)
        messages += [{"role": "user", "content": hello}, {"role": "assistant", "content": reply}]
    user = _decorate(rng, turn) if turn.calls else turn.user
    messages.append({"role": "user", "content": user})
    message: Json
    if turn.calls:
        calls: list[Json] = [
            {
                "id": f"call_{_hex(rng, 24)}",
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(args).decode()},
            }
            for name, args in turn.calls
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        finish, completion = (
            "tool_calls",
            sum(_tokens(str(c["function"]["arguments"])) + 8 for c in calls),
        )
    else:
        answer = turn.answer or ""
        message = {"role": "assistant", "content": answer}
        finish, completion = "stop", _tokens(answer)
    prompt = 420 + sum(_tokens(str(m["content"])) for m in messages)
    return {
        "client_id": client_id,
        "workload_id": workload_id,
        "timestamp": timestamp,
        "request": {
            "model": PRODUCTION_MODEL,
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": "auto",
            "temperature": 0.2,
            "max_tokens": 512,
        },
        "response": {
            "id": f"chatcmpl-{_hex(rng, 29)}",
            "object": "chat.completion",
            "created": timestamp // 1000,
            "model": PRODUCTION_MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        },
    }


def _timestamps(rng: random.Random, n: int, now_ms: int | None, days: int) -> list[int]:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    span = days * DAY_MS
    # Oldest first, at least a minute in the past (never "in the future" on ingestion).
    return sorted(now - 60_000 - rng.randrange(span) for _ in range(n))


def generate_chat_logs(
    n: int,
    *,
    seed: int = 0,
    client_id: str = CLIENT_ID,
    workload_id: str = CHAT_WORKLOAD_ID,
    text_share: float = 0.15,
    now_ms: int | None = None,
    days: int = 30,
) -> Iterator[Json]:
    """``n`` chat log records of the support assistant, oldest first.

    ``text_share`` of them are answered in text (no tool call); the rest call one of the
    six :data:`TOOLS` (a few call one twice). Timestamps spread over the ``days`` before
    ``now_ms`` (default: now). Deterministic for a given ``seed`` and ``now_ms``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= text_share <= 1.0:
        raise ValueError(f"text_share must be within [0, 1], got {text_share}")
    rng = random.Random(seed)
    stamps = _timestamps(rng, n, now_ms, days)
    makers = [m for m, _ in _INTENTS]
    weights = [w for _, w in _INTENTS]
    for timestamp in stamps:
        text = rng.random() < text_share
        turn = _chitchat(rng) if text else rng.choices(makers, weights)[0](rng)
        yield _chat_record(
            rng, turn, client_id=client_id, workload_id=workload_id, timestamp=timestamp
        )


# ---- retrieval ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Article:
    """One help-centre passage and the questions users ask about it."""

    doc_id: str
    source: str
    text: str
    questions: tuple[str, ...]
    #: For a product page: the product's code and the page's topic.
    product: str = ""
    topic: str = ""


#: The general articles (not about one product).
GENERAL_ARTICLES: tuple[Article, ...] = (
    Article("kb-returns", "policies",
            "Unused items can be returned within 30 days of delivery for a full refund. Sale "
            "items are included. Start a return from Orders → Return an item.",
            ("how do I return something", "what is the return window",
             "can I return a sale item", "return policy for unused gear")),
    Article("kb-refund-time", "policies",
            "Refunds are issued to the original payment method within 5 business days after "
            "the returned parcel reaches our warehouse.",
            ("when will I get my refund", "how long do refunds take",
             "refund not received yet", "how fast is money returned after a return")),
    Article("kb-shipping-cost", "shipping",
            "Standard shipping is free on orders over $50 and $5.99 otherwise. Express "
            "shipping costs $14.99.",
            ("how much does shipping cost", "is shipping free",
             "price of express delivery", "minimum order for free shipping")),
    Article("kb-shipping-time", "shipping",
            "Standard orders arrive in 3–5 business days, express orders in 1–2. Orders "
            "placed before 2 pm Eastern ship the same day.",
            ("how long does delivery take", "when will my order arrive",
             "same day shipping cutoff", "express delivery time")),
    Article("kb-international", "shipping",
            "We ship to Canada, the UK and the EU. Duties and taxes are calculated at "
            "checkout; delivery takes 7–12 business days.",
            ("do you ship internationally", "shipping to canada",
             "customs duties on international orders", "can I order from germany")),
    Article("kb-address-change", "orders",
            "You can change the shipping address until the order ships. After that, contact "
            "the carrier with your tracking number to redirect the parcel.",
            ("how do I change my shipping address", "wrong address on my order",
             "redirect a parcel that already shipped", "update delivery address")),
    Article("kb-cancel", "orders",
            "Orders can be cancelled free of charge until they ship, usually within two "
            "hours of purchase. Shipped orders must be returned instead.",
            ("how do I cancel an order", "can I cancel after shipping",
             "cancellation fee", "cancel my purchase")),
    Article("kb-tracking", "orders",
            "Your tracking number is in the shipping confirmation email and under Orders. "
            "Tracking updates can take 24 hours to appear.",
            ("where is my tracking number", "tracking not updating",
             "how do I track my package", "no tracking information yet")),
    Article("kb-damaged", "orders",
            "If an item arrives damaged, send us a photo within 14 days and we will ship a "
            "replacement or refund you, with no need to return it.",
            ("my item arrived broken", "what to do with a damaged product",
             "package arrived damaged", "received a torn jacket")),
    Article("kb-warranty", "products",
            "All Acme-brand gear has a two-year warranty against manufacturing defects. "
            "Normal wear and accidents are not covered.",
            ("what does the warranty cover", "how long is the warranty",
             "zipper broke after a year", "is wear and tear covered")),
    Article("kb-sizing", "products",
            "Our jackets run true to size; boots run half a size small, so order half a size "
            "up. Size charts are on every product page.",
            ("do your boots run small", "how do I pick a jacket size",
             "size chart for hiking boots", "should I size up")),
    Article("kb-waterproof", "products",
            "Waterproof jackets use a 20,000 mm membrane and taped seams. Re-apply DWR "
            "treatment after about 30 washes.",
            ("are your rain jackets waterproof", "how to reproof a jacket",
             "what waterproof rating do jackets have", "jacket wetting out")),
    Article("kb-care", "products",
            "Wash down jackets and sleeping bags on a gentle cycle with down wash, then tumble "
            "dry low with dryer balls.",
            ("how do I wash a down jacket", "cleaning a sleeping bag",
             "can I put down in the dryer", "care instructions for down")),
    Article("kb-payment", "billing",
            "We accept Visa, Mastercard, American Express, PayPal, Apple Pay and Acme gift "
            "cards. Cards are charged when the order ships.",
            ("what payment methods do you accept", "can I pay with paypal",
             "when is my card charged", "do you take amex")),
    Article("kb-gift-cards", "billing",
            "Gift cards never expire and can be combined with one other payment method. "
            "Lost cards can be replaced with the purchase receipt.",
            ("do gift cards expire", "lost my gift card",
             "use gift card and credit card together", "gift card balance")),
    Article("kb-price-match", "billing",
            "We match the price of authorised retailers within 14 days of purchase and refund "
            "the difference.",
            ("do you price match", "found it cheaper after buying",
             "price adjustment after purchase", "refund the price difference")),
    Article("kb-loyalty", "account",
            "Acme Rewards members earn one point per dollar; 100 points are worth $5 off. "
            "Points expire after 12 months without purchases.",
            ("how does the rewards program work", "do points expire",
             "how many points per dollar", "redeem reward points")),
    Article("kb-password", "account",
            "Reset your password from Sign in → Forgot password. The reset link is valid "
            "for one hour.",
            ("how do I reset my password", "forgot password",
             "password reset link expired", "can't log in to my account")),
    Article("kb-stores", "stores",
            "Acme has stores in Portland, Denver and Boulder, open 10 am to 8 pm daily. "
            "Online orders can be picked up in store for free.",
            ("where are your stores", "store opening hours",
             "can I pick up my order in store", "is there a store in denver")),
    Article("kb-rentals", "stores",
            "Tents, kayaks and ski gear can be rented in our stores by the day or week; "
            "members get 20 % off rentals.",
            ("can I rent a tent", "kayak rental price",
             "do you rent ski gear", "rental discount for members")),
)  # fmt: skip

# ---- retrieval: agent-assist search over the help centre --------------------------------
# The support agents search the knowledge base in the team's shorthand: internal product
# codes ("KX", "the QV") and ticket abbreviations ("rma", "wty", "b/o"). The product pages
# never mention the codes, and the 14 product lines share the same ten page layouts, so a
# general-purpose embedder finds the right *kind* of page but not the right product's. The
# codes map to one product each, consistently, so a retriever fine-tuned on the logs learns
# them.


@dataclass(frozen=True)
class Product:
    """An Acme product line: its public name, the agents' code for it, its details."""

    code: str
    name: str
    part: str  # the part warranty, repair and known-issue pages talk about
    spare: str
    cleaner: str


#: The product lines, with the internal codes agents use for them (never in the pages).
PRODUCTS: tuple[Product, ...] = (
    Product("KX", "Ridgeline 2 tent", "pole set", "tent stakes",
            "a sponge and lukewarm water"),
    Product("QV", "Basecamp 6 tent", "hub connector", "guy lines",
            "a sponge and lukewarm water"),
    Product("ZR", "Cirrus down jacket", "main zipper", "zipper pulls",
            "down wash on a gentle cycle"),
    Product("WP", "Squall rain shell", "taped seams", "cord locks",
            "technical wash on a gentle cycle"),
    Product("HB", "Talus hiking boot", "Vibram sole", "laces",
            "a soft brush and boot cleaner"),
    Product("MJ", "Switchback trail shoe", "toe cap", "insoles",
            "a soft brush and mild soap"),
    Product("TN", "Nimbus 20 sleeping bag", "baffle seams", "compression sacks",
            "down wash in a front loader"),
    Product("DF", "Drift sleeping pad", "inflation valve", "repair patches",
            "a damp cloth and mild soap"),
    Product("YL", "Ember camp stove", "burner head", "pot supports",
            "a dry brush once it is cold"),
    Product("GC", "Clearwater water filter", "hollow-fibre cartridge", "filter cartridges",
            "clean water by backflushing"),
    Product("SU", "Lumen 400 headlamp", "battery door", "headbands",
            "a damp cloth only"),
    Product("PE", "Pika 28 daypack", "hip-belt buckle", "sternum straps",
            "a sponge and mild soap"),
    Product("OW", "Glide touring kayak", "rudder cable", "hatch covers",
            "fresh water after every trip"),
    Product("BR", "Vista trekking poles", "flick lock", "carbide tips",
            "a damp cloth, then air dry"),
)  # fmt: skip
PRODUCT_CODES = {p.code: p.name for p in PRODUCTS}

#: Page layouts every product line has: topic → (source, page text template).
_TOPIC_PAGES: dict[str, tuple[str, str]] = {
    "warranty": ("warranty",
        "The {name} is covered for {years} years against manufacturing defects, the "
        "{part} included. Normal wear, UV damage and accidents are not covered; claims need "
        "the order number and a photo."),
    "returns": ("returns",
        "An unused {name} can be returned within {days} days of delivery for a full refund. "
        "{rule}"),
    "repair": ("repairs",
        "Our repair centre fixes a damaged {part} on the {name} in about {repair_days} "
        "business days. Repairs outside the warranty cost a flat ${repair_fee}."),
    "spares": ("parts",
        "Spare {spare} for the {name} cost ${spare_price} a set and ship separately within "
        "{spare_days} business days."),
    "care": ("care",
        "Clean the {name} with {cleaner}. Let it dry fully before storage; never {never}."),
    "specs": ("specs",
        "The {name} weighs {weight} g and packs down to {packed} litres. It comes in "
        "{colours} colours."),
    "restock": ("stock",
        "The {name} is restocked about every {restock} weeks. Backorders ship in the order "
        "they were placed and are charged only when they ship."),
    "known_issue": ("known-issues",
        "Known issue: some {name} units made before {month} may have a faulty {part}. We "
        "replace it free of charge, with no need to return the product."),
    "shipping": ("shipping",
        "The {name} ships {carrier}. Delivery to Alaska and Hawaii takes {remote} extra "
        "business days."),
    "trade_in": ("trade-in",
        "Trade in a used {name} at any Acme store for a ${credit} credit toward a new one; "
        "it must be clean and complete."),
}  # fmt: skip

_RETURN_RULES = (
    "Used items are accepted only when they are defective.",
    "Returns must include every original accessory.",
    "Opened items carry a 15 % restocking fee.",
    "Store returns are refunded on the spot.",
)
_NEVER = (
    "machine wash it", "use bleach", "store it compressed", "dry it near a heater",
    "use a pressure washer", "iron it",
)  # fmt: skip
_MONTHS = (
    "March 2024", "May 2024", "June 2024", "August 2024", "October 2024", "January 2025",
    "February 2025", "April 2025",
)  # fmt: skip
_CARRIERS = (
    "by ground only", "by ground or express air", "by ground only because of its size",
    "by express air at no extra cost", "by freight, with a delivery appointment",
)  # fmt: skip


def _product_pages() -> tuple[Article, ...]:
    """One page per product and topic; the details come from a fixed seed (constant KB)."""
    rng = random.Random(20_240_601)
    pages: list[Article] = []
    for product in PRODUCTS:
        details = {
            "name": product.name,
            "part": product.part,
            "spare": product.spare,
            "cleaner": product.cleaner,
            "years": rng.choice((2, 3, 5, 10)),
            "days": rng.choice((30, 45, 60, 90, 100)),
            "rule": rng.choice(_RETURN_RULES),
            "repair_days": rng.choice((5, 7, 10, 14, 21)),
            "repair_fee": rng.choice((15, 25, 35, 45, 60)),
            "spare_price": rng.choice((6, 9, 12, 18, 24, 29)),
            "spare_days": rng.choice((2, 3, 5, 7)),
            "never": rng.choice(_NEVER),
            "weight": rng.randrange(180, 4800, 10),
            "packed": rng.choice((2, 3, 5, 8, 12, 18, 25)),
            "colours": rng.choice(("two", "three", "four", "five")),
            "restock": rng.choice((2, 3, 4, 6, 8)),
            "month": rng.choice(_MONTHS),
            "carrier": rng.choice(_CARRIERS),
            "remote": rng.choice((2, 3, 4, 5, 7)),
            "credit": rng.choice((10, 15, 20, 25, 40, 50)),
        }
        slug = product.name.split()[0].lower()
        for topic, (source, template) in _TOPIC_PAGES.items():
            text = template.format(**details)
            pages.append(
                Article(
                    f"kb-{slug}-{topic.replace('_', '-')}", source, text, (), product.code, topic
                )
            )
    return tuple(pages)


PRODUCT_PAGES: tuple[Article, ...] = _product_pages()
#: Every passage of the help centre: the general articles and the product pages.
KNOWLEDGE_BASE: tuple[Article, ...] = GENERAL_ARTICLES + PRODUCT_PAGES

#: How agents name each topic: plain words and the team's abbreviations.
_TOPIC_PHRASES: dict[str, tuple[str, ...]] = {
    "warranty": ("warranty", "wty", "wty length", "defect claim", "is it still under wty",
                 "how many yrs of coverage"),
    "returns": ("return window", "rma", "rma window", "can cust send it back", "rtn policy",
                "days to return"),
    "repair": ("repair", "rpr tat", "repair turnaround", "out-of-wty rpr fee", "fix at the depot",
               "depot tat"),
    "spares": ("spare parts", "spares", "sp price", "replacement bits", "sp lead time",
               "order spares"),
    "care": ("cleaning", "care instructions", "how to wash", "c&c", "care tag", "wash/dry"),
    "specs": ("weight", "packed size", "specs", "how heavy", "pack vol", "colourways"),
    "restock": ("restock", "back in stock when", "b/o eta", "backorder", "oos eta",
                "when restocked"),
    "known_issue": ("known issue", "ki", "faulty batch", "bad batch", "ki replacement",
                    "defect batch swap"),
    "shipping": ("ship restrictions", "air ship ok", "ground only?", "ak/hi delivery",
                 "shipping method", "carrier"),
    "trade_in": ("trade-in", "ti credit", "trade in value", "store credit for old one", "ti",
                 "trade-in rules"),
}  # fmt: skip
_CODE_FORMS = ("{code}", "{code}", "{lower}", "the {code}", "{code} unit", "{lower} sku")
_NAME_SHARE = 0.35  # queries that name the product plainly instead of by its code
_AGENT_TEMPLATES = (
    "{product} {topic}", "{topic} {product}", "{product} - {topic}", "{topic} for {product}",
    "{topic} on {product}?", "cust asking {topic} {product}", "{product}: {topic}",
    "{product} {topic} info", "{topic}, {product}", "need {topic} for a {product}",
)  # fmt: skip
_GENERAL_SHARE = 0.22  # questions about the general (not product-specific) articles
_QUERY_OPENERS = ("", "", "", "", "", "hi ", "quick q: ", "help: ", "q - ", "agent: ")
_QUERY_CLOSERS = ("", "", "", "?", "?", " pls", " thx", " asap")
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _product_mention(rng: random.Random, product: Product) -> str:
    if rng.random() < _NAME_SHARE:
        words = product.name.split()
        return rng.choice((product.name, words[0], " ".join(words[:-1]) or words[0])).lower()
    form = rng.choice(_CODE_FORMS)
    return form.format(code=product.code, lower=product.code.lower())


def _query_for(rng: random.Random, page: Article) -> str:
    """An agent's query about ``page``: a general question, or shorthand for a product page."""
    if not page.product:
        return rng.choice(_QUERY_OPENERS) + rng.choice(page.questions) + rng.choice(_QUERY_CLOSERS)
    product = next(p for p in PRODUCTS if p.code == page.product)
    query = rng.choice(_AGENT_TEMPLATES).format(
        product=_product_mention(rng, product), topic=rng.choice(_TOPIC_PHRASES[page.topic])
    )
    return rng.choice(_QUERY_OPENERS) + query + rng.choice(_QUERY_CLOSERS)


def generate_retrieval_logs(
    n: int,
    *,
    seed: int = 0,
    client_id: str = CLIENT_ID,
    workload_id: str = RETRIEVAL_WORKLOAD_ID,
    top_k: int = 5,
    now_ms: int | None = None,
    days: int = 30,
) -> Iterator[Json]:
    """``n`` retrieval log records over :data:`KNOWLEDGE_BASE`, oldest first.

    Most queries are agents' shorthand for one product page (a product code and a topic
    abbreviation); the rest ask about a general article. The logged production retriever
    knows the topic abbreviations but not the product codes: it scores passages by word
    overlap, a bonus for the right topic, a smaller one for the right product and noise, and
    returns the ``top_k``, so the other products' pages on the same topic crowd the list and
    the right one is often not first. The answer used the asked-about page when it was
    returned (``used_doc_ids``), else nothing. Some agents click the used passage.
    Deterministic for a given ``seed`` and ``now_ms``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= top_k <= len(KNOWLEDGE_BASE):
        raise ValueError(f"top_k must be within [1, {len(KNOWLEDGE_BASE)}], got {top_k}")
    rng = random.Random(seed)
    stamps = _timestamps(rng, n, now_ms, days)
    doc_words = {a.doc_id: _words(a.text) for a in KNOWLEDGE_BASE}
    for timestamp in stamps:
        pool = GENERAL_ARTICLES if rng.random() < _GENERAL_SHARE else PRODUCT_PAGES
        page = rng.choice(pool)
        query = _query_for(rng, page)
        words = _words(query)

        def score(a: Article, page: Article = page, words: set[str] = words) -> float:
            value = len(words & doc_words[a.doc_id]) / (1 + len(words))
            if page.product:
                value += 0.35 * (a.topic == page.topic) + 0.04 * (a.product == page.product)
            return value + 0.1 * (a is page) + rng.gauss(0.0, 0.1)

        scored = sorted(((score(a), a) for a in KNOWLEDGE_BASE), key=lambda p: -p[0])[:top_k]
        retrieved = [
            {
                "doc_id": a.doc_id,
                "text": a.text,
                "score": round(max(0.0, min(1.0, 0.5 + s)), 4),
                "rank": rank,
                "source": a.source,
            }
            for rank, (s, a) in enumerate(scored)
        ]
        hit = any(p["doc_id"] == page.doc_id for p in retrieved)
        used = [page.doc_id] if hit else []
        clicked = [page.doc_id] if hit and rng.random() < 0.3 else []
        record: Json = {
            "kind": "retrieval",
            "client_id": client_id,
            "workload_id": workload_id,
            "timestamp": timestamp,
            "query": query,
            "retrieved": retrieved,
            "used_doc_ids": used,
            "clicked_doc_ids": clicked,
        }
        if rng.random() < 0.1:
            record["feedback"] = {"thumbs": "up" if hit else "down"}
        yield record


def to_jsonl_lines(records: Iterable[Json]) -> Iterator[bytes]:
    """Records as NDJSON lines (``bytes`` with a trailing newline), ready for ``ingest_lines``."""
    for record in records:
        yield orjson.dumps(record) + b"\n"
