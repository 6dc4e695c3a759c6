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

**Retrieval logs** (``embedding_job``): questions about the shop's help-centre articles
(:data:`KNOWLEDGE_BASE`), the five passages a lexical retriever returned for each, and the
passage the answer used. The production retriever is imperfect on purpose (noisy scores), so
the used passage is often not ranked first: there is something for fine-tuning to learn.

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


KNOWLEDGE_BASE: tuple[Article, ...] = (
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

_QUERY_OPENERS = (
    "", "", "", "", "hi, ", "hey ", "quick question: ", "please tell me ", "i need to know ",
    "can you tell me ", "help: ", "question - ",
)  # fmt: skip
_QUERY_CLOSERS = ("", "", "?", "?", " please", " thanks", " for my order", " asap")
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


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

    Each query asks about one article; the logged retriever scores articles by word overlap,
    a bonus for the right article and noise, and returns the ``top_k``. The answer used the
    asked-about article when it was returned (``used_doc_ids``); when the retriever missed
    it, the answer used nothing. Some users click the used passage. Deterministic for a
    given ``seed`` and ``now_ms``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= top_k <= len(KNOWLEDGE_BASE):
        raise ValueError(f"top_k must be within [1, {len(KNOWLEDGE_BASE)}], got {top_k}")
    rng = random.Random(seed)
    stamps = _timestamps(rng, n, now_ms, days)
    doc_words = {a.doc_id: _words(a.text) for a in KNOWLEDGE_BASE}
    for timestamp in stamps:
        article = rng.choice(KNOWLEDGE_BASE)
        query = rng.choice(_QUERY_OPENERS) + rng.choice(article.questions)
        query += rng.choice(_QUERY_CLOSERS)
        words = _words(query)
        scored = sorted(
            (
                (
                    len(words & doc_words[a.doc_id]) / (1 + len(words))
                    + (0.15 if a is article else 0.0)  # the production retriever is decent
                    + rng.gauss(0.0, 0.1),
                    a,
                )
                for a in KNOWLEDGE_BASE
            ),
            key=lambda pair: -pair[0],
        )[:top_k]
        retrieved = [
            {
                "doc_id": a.doc_id,
                "text": a.text,
                "score": round(max(0.0, min(1.0, 0.5 + score)), 4),
                "rank": rank,
                "source": a.source,
            }
            for rank, (score, a) in enumerate(scored)
        ]
        hit = any(p["doc_id"] == article.doc_id for p in retrieved)
        used = [article.doc_id] if hit else []
        clicked = [article.doc_id] if hit and rng.random() < 0.3 else []
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
