// Checks an OpenAI-compatible server with the official `openai` client for Node: the models list,
// completions and chat completions, each streamed and not, greedy. It checks the shapes the client
// relies on (objects, choices, finish_reason, usage), that the streamed text equals the text
// returned whole, that the streamed usage agrees, and that a request for an unknown model is
// refused with an OpenAI error. Exits 0 when every check passes, 1 when any fails (each failure is
// printed), 2 for a wrong command line.
//
// Usage: node client_test.mjs BASE_URL MODEL [--max-tokens N] [--api-key KEY] [--no-chat-format]
//   BASE_URL: the server, with or without /v1 (http://127.0.0.1:8000)
//   --no-chat-format: the model has no chat format, so chat requests must be refused with a 400
//     and an OpenAI error body instead of answered
import OpenAI from "openai";
import { VERSION } from "openai/version";

function usage(message) {
  console.error(`error: ${message}\nusage: node client_test.mjs BASE_URL MODEL [--max-tokens N] [--api-key KEY] [--no-chat-format]`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { maxTokens: 16, apiKey: process.env.OPENAI_API_KEY || "unused", chatFormat: true };
  const positional = [];
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === "--max-tokens") {
      options.maxTokens = Number(argv[++i]);
      if (!Number.isInteger(options.maxTokens) || options.maxTokens < 2) usage("--max-tokens needs an integer >= 2");
    } else if (argv[i] === "--api-key") {
      options.apiKey = argv[++i];
      if (!options.apiKey) usage("--api-key needs a value");
    } else if (argv[i] === "--no-chat-format") {
      options.chatFormat = false;
    } else if (argv[i].startsWith("--")) {
      usage(`unknown flag ${argv[i]}`);
    } else {
      positional.push(argv[i]);
    }
  }
  if (positional.length !== 2) usage("expected BASE_URL and MODEL");
  const [url, model] = positional;
  if (!/^https?:\/\/[^\s]+$/.test(url)) usage(`bad BASE_URL '${url}': expected http://HOST:PORT`);
  const baseURL = url.replace(/\/+$/, "").replace(/(\/v1)?$/, "/v1");
  return { ...options, baseURL, model };
}

const failures = [];
let checks = 0;

function check(condition, what, detail) {
  ++checks;
  if (!condition) failures.push(detail === undefined ? what : `${what} (got ${JSON.stringify(detail)})`);
}

const isCount = (n) => Number.isInteger(n) && n >= 0;

function checkUsage(where, usage, maxTokens) {
  check(usage && typeof usage === "object", `${where}: usage is an object`, usage);
  if (!usage) return;
  check(isCount(usage.prompt_tokens) && usage.prompt_tokens > 0, `${where}: usage.prompt_tokens > 0`, usage.prompt_tokens);
  check(isCount(usage.completion_tokens) && usage.completion_tokens >= 1 && usage.completion_tokens <= maxTokens,
        `${where}: 1 <= usage.completion_tokens <= max_tokens ${maxTokens}`, usage.completion_tokens);
  check(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
        `${where}: usage.total_tokens = prompt_tokens + completion_tokens`, usage);
}

function checkFinish(where, finishReason, usage, maxTokens) {
  check(finishReason === "length" || finishReason === "stop", `${where}: finish_reason is "length" or "stop"`,
        finishReason);
  if (finishReason === "length" && usage) {
    check(usage.completion_tokens === maxTokens, `${where}: finish_reason "length" means max_tokens were generated`,
          usage.completion_tokens);
  }
}

// The chunks of a stream: the text they carry in order, the finish_reason, the usage chunk.
async function collect(stream, where, objectName, textOf) {
  let text = "";
  let finishReason = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    check(chunk.object === objectName, `${where}: every chunk's object is "${objectName}"`, chunk.object);
    check(typeof chunk.id === "string" && chunk.id.length > 0, `${where}: every chunk has an id`, chunk.id);
    check(Array.isArray(chunk.choices), `${where}: every chunk has a choices list`, chunk.choices);
    if (chunk.usage) {
      check(usage === null, `${where}: one usage chunk`);
      check(chunk.choices.length === 0, `${where}: the usage chunk has no choices`, chunk.choices);
      usage = chunk.usage;
      continue;
    }
    check(usage === null, `${where}: the usage chunk comes last`);
    for (const choice of chunk.choices ?? []) {
      check(choice.index === 0, `${where}: choices[].index is 0 for n = 1`, choice.index);
      text += textOf(choice) ?? "";
      if (choice.finish_reason) {
        check(finishReason === null, `${where}: finish_reason is given once`, choice.finish_reason);
        finishReason = choice.finish_reason;
      }
    }
  }
  check(chunks >= 2, `${where}: the answer came in more than one chunk`, chunks);
  return { text, finishReason, usage };
}

async function checkModels(client, model) {
  const ids = [];
  for await (const m of client.models.list()) {
    check(m.object === "model", `models.list: object is "model"`, m.object);
    ids.push(m.id);
  }
  check(ids.includes(model), `models.list includes ${model}`, ids);
}

async function checkCompletions(client, model, maxTokens) {
  const request = { model, prompt: "The quick brown fox jumps over the lazy dog. The quick brown", max_tokens: maxTokens,
                    temperature: 0 };
  const whole = await client.completions.create(request);
  check(whole.object === "text_completion", `completions: object is "text_completion"`, whole.object);
  check(typeof whole.id === "string" && whole.id.length > 0, "completions: has an id", whole.id);
  check(whole.model === model, "completions: model is the one asked for", whole.model);
  check(Array.isArray(whole.choices) && whole.choices.length === 1, "completions: one choice", whole.choices);
  const choice = whole.choices?.[0] ?? {};
  check(typeof choice.text === "string" && choice.text.length > 0, "completions: choices[0].text is text", choice.text);
  check(choice.index === 0, "completions: choices[0].index is 0", choice.index);
  checkUsage("completions", whole.usage, maxTokens);
  checkFinish("completions", choice.finish_reason, whole.usage, maxTokens);

  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  const streamed = await collect(stream, "completions stream", "text_completion", (c) => c.text);
  check(streamed.text === choice.text, "completions stream: the streamed text equals the text returned whole",
        { streamed: streamed.text, whole: choice.text });
  check(streamed.finishReason === choice.finish_reason, "completions stream: the same finish_reason",
        streamed.finishReason);
  checkUsage("completions stream", streamed.usage, maxTokens);
  check(streamed.usage?.completion_tokens === whole.usage?.completion_tokens &&
        streamed.usage?.prompt_tokens === whole.usage?.prompt_tokens,
        "completions stream: the same usage as returned whole", { streamed: streamed.usage, whole: whole.usage });
}

async function checkChat(client, model, maxTokens) {
  const request = { model, messages: [{ role: "user", content: "Say hello and count to ten." }], max_tokens: maxTokens,
                    temperature: 0 };
  const whole = await client.chat.completions.create(request);
  check(whole.object === "chat.completion", `chat: object is "chat.completion"`, whole.object);
  check(typeof whole.id === "string" && whole.id.length > 0, "chat: has an id", whole.id);
  check(whole.model === model, "chat: model is the one asked for", whole.model);
  check(Array.isArray(whole.choices) && whole.choices.length === 1, "chat: one choice", whole.choices);
  const choice = whole.choices?.[0] ?? {};
  const message = choice.message ?? {};
  check(message.role === "assistant", `chat: the message's role is "assistant"`, message.role);
  // A reasoning model may spend every token of a short answer on its reasoning: no content, null.
  check(typeof message.content === "string" || message.content === null, "chat: the message content is text or null",
        message.content);
  checkUsage("chat", whole.usage, maxTokens);
  checkFinish("chat", choice.finish_reason, whole.usage, maxTokens);

  const stream = await client.chat.completions.create({ ...request, stream: true,
                                                        stream_options: { include_usage: true } });
  let role = null;
  const streamed = await collect(stream, "chat stream", "chat.completion.chunk", (c) => {
    if (c.delta?.role) role = role ?? c.delta.role;
    return c.delta?.content;
  });
  check(role === "assistant", `chat stream: a delta gives the role "assistant"`, role);
  check(streamed.text === (message.content ?? ""), "chat stream: the streamed text equals the text returned whole",
        { streamed: streamed.text, whole: message.content });
  check(streamed.finishReason === choice.finish_reason, "chat stream: the same finish_reason", streamed.finishReason);
  checkUsage("chat stream", streamed.usage, maxTokens);
  check(streamed.usage?.completion_tokens === whole.usage?.completion_tokens,
        "chat stream: the same usage as returned whole", { streamed: streamed.usage, whole: whole.usage });
}

async function checkChatRefused(client, model) {
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 4 });
    check(false, "chat: a model without a chat format refuses chat requests");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, "chat: refused with a 400 (BadRequestError)", e?.status);
    check(typeof e.error?.message === "string" && e.error.message.length > 0,
          "chat: the refusal carries an OpenAI error body with a message", e.error);
  }
}

async function checkUnknownModel(client) {
  try {
    await client.completions.create({ model: "no-such-model-here", prompt: "hi", max_tokens: 2 });
    check(false, "an unknown model is refused");
  } catch (e) {
    check(e instanceof OpenAI.APIError, "an unknown model is refused with an API error", String(e));
    check(e.status >= 400 && e.status < 500, "an unknown model is refused with a 4xx status", e.status);
    check(typeof e.error?.message === "string" && e.error.message.length > 0,
          "the refusal carries an OpenAI error body with a message", e.error);
  }
}

async function main() {
  const { baseURL, model, maxTokens, apiKey, chatFormat } = parseArgs(process.argv.slice(2));
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 300_000 });
  const steps = [["models", () => checkModels(client, model)],
                 ["completions", () => checkCompletions(client, model, maxTokens)],
                 ["chat completions", () => chatFormat ? checkChat(client, model, maxTokens)
                                                       : checkChatRefused(client, model)],
                 ["unknown model", () => checkUnknownModel(client)]];
  for (const [name, step] of steps) {
    try {
      await step();
    } catch (e) {
      check(false, `${name}: the request failed: ${e?.status ? `HTTP ${e.status}: ` : ""}${e?.message ?? e}`);
    }
  }
  for (const failure of failures) console.error(`FAIL ${failure}`);
  console.log(`openai client ${VERSION} against ${baseURL} (model ${model}): ` +
              `${checks - failures.length} of ${checks} checks passed`);
  process.exit(failures.length === 0 ? 0 : 1);
}

main();
