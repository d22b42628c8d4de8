import { readFileSync } from 'node:fs';
import { XmlDocument, XsdValidator, XmlValidateError } from 'libxml2-wasm';
import { CAP_NS } from './cap.js';

/*
 * XML in and out, safely. Outgoing CAP messages are validated against the OASIS schema (CapSchema.check);
 * agency answers are parsed by parseAnswer: size capped, any DOCTYPE refused before a parser sees it (no
 * entities, no external DTD, no billion laughs), then libxml2 (WASM: no host filesystem or network either),
 * then the CAP namespace and msgType checked.
 */

/** The XSD, loaded once: check(xml) -> null when valid, else the validator's message. */
export class CapSchema {
  private readonly validator: XsdValidator;

  constructor(xsdText: string) {
    using doc = XmlDocument.fromString(xsdText);
    this.validator = XsdValidator.fromDoc(doc);
  }

  static fromFile(path: string): CapSchema {
    return new CapSchema(readFileSync(path, 'utf8'));
  }

  check(xml: string): string | null {
    if (/<!DOCTYPE|<!ENTITY/i.test(xml)) return 'DOCTYPE or ENTITY declarations are not allowed';
    let doc: XmlDocument;
    try {
      doc = XmlDocument.fromString(xml);
    } catch (err) {
      return `not well-formed: ${(err as Error).message}`;
    }
    try {
      this.validator.validate(doc);
      return null;
    } catch (err) {
      if (err instanceof XmlValidateError)
        return err.details.map((d) => `line ${d.line}: ${d.message.trim()}`).join('; ') || err.message;
      return (err as Error).message;
    } finally {
      doc.dispose();
    }
  }
}

/** Answer bytes read at most; a longer answer is refused (`oversized`). */
export const MAX_ANSWER_BYTES = 64 * 1024;

export type AnswerRefusal = 'oversized' | 'doctype' | 'not_xml' | 'wrong_namespace' | 'not_cap' | 'invalid';

export type Answer =
  | { kind: 'none' }
  | { kind: 'ack' | 'error'; note: string | null; references: string | null }
  | { kind: 'refused'; reason: AnswerRefusal; detail: string };

/**
 * The agency's answer body: empty (only the HTTP status counts), a CAP message with msgType Ack or Error, or
 * refused with a reason (counted by the caller). `truncated`: the body went past MAX_ANSWER_BYTES.
 */
export function parseAnswer(body: Buffer, truncated: boolean, schema?: CapSchema): Answer {
  if (truncated || body.length > MAX_ANSWER_BYTES)
    return { kind: 'refused', reason: 'oversized', detail: `answer larger than ${MAX_ANSWER_BYTES} bytes` };
  const text = body.toString('utf8');
  if (text.trim() === '') return { kind: 'none' };
  // Before any parser: a DTD is where entities (XXE, billion laughs) and external fetches live.
  if (/<!DOCTYPE|<!ENTITY/i.test(text))
    return { kind: 'refused', reason: 'doctype', detail: 'DOCTYPE or ENTITY declaration in the answer' };
  let doc: XmlDocument;
  try {
    doc = XmlDocument.fromString(text);
  } catch (err) {
    return { kind: 'refused', reason: 'not_xml', detail: (err as Error).message.slice(0, 200) };
  }
  try {
    const root = doc.root;
    if (root.namespaceUri !== CAP_NS || root.name !== 'alert')
      return {
        kind: 'refused',
        reason: 'wrong_namespace',
        detail: `root {${root.namespaceUri}}${root.name}, expected {${CAP_NS}}alert`,
      };
    if (schema) {
      const invalid = schema.check(text);
      if (invalid) return { kind: 'refused', reason: 'invalid', detail: invalid.slice(0, 300) };
    }
    const ns = { cap: CAP_NS };
    const text1 = (xp: string): string | null => doc.get(xp, ns)?.content ?? null;
    const msgType = text1('/cap:alert/cap:msgType');
    if (msgType !== 'Ack' && msgType !== 'Error')
      return {
        kind: 'refused',
        reason: 'not_cap',
        detail: `msgType ${String(msgType)}, expected Ack or Error`,
      };
    return {
      kind: msgType === 'Ack' ? 'ack' : 'error',
      note: text1('/cap:alert/cap:note')?.slice(0, 500) ?? null,
      references: text1('/cap:alert/cap:references')?.slice(0, 500) ?? null,
    };
  } finally {
    doc.dispose();
  }
}
