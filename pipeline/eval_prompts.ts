/**
 * The fixed prompts and questions of `deno task eval`: the same set for every model, so runs
 * compare. They are varied on purpose (stories, everyday life, explanations, word tasks, facts)
 * and not tuned to one model or corpus.
 *
 * @module
 */

/** Text openings that a pretrained model continues (up to 120 new tokens each). */
export const EVAL_PROMPTS: readonly string[] = [
  "Once upon a time, there was a little girl named Lily who",
  "The old man walked slowly to the bus stop.",
  "Every morning before school, Tom",
  "It was raining hard, and the children",
  "The dog barked at the door because",
  "My grandmother has a small garden behind her house.",
  "When the sun went down, the forest",
  "There are many reasons why people like to travel.",
  "The best way to make a cup of tea is",
  "Water is important for all living things because",
  "In the summer, our family likes to",
  "The teacher asked the class a question.",
  "A good friend is someone who",
  "The city was busy that afternoon.",
  "Scientists have found that sleep",
  "The boy opened the box and saw",
  "Cooking dinner at home can be",
  "On the first day at her new job, Maria",
  "The river flowed past the little village,",
  "If you want to learn to play the piano,",
];

/** A question of the eval and the words any on-topic answer would use. */
export interface EvalQuestion {
  /** What the user asks. */
  question: string;
  /**
   * Words (or short phrases) an answer about the question's subject would use, right or wrong
   * in its facts; an answer that uses none of them is off topic.
   */
  topicWords: readonly string[];
}

/** Questions and requests that an instruction-tuned model answers in ChatML. */
export const EVAL_QUESTIONS: readonly EvalQuestion[] = [
  { question: "Why is the sky blue?", topicWords: ["sky", "blue", "light", "sun", "air"] },
  {
    question: "What is the capital of France?",
    topicWords: ["Paris", "capital", "France", "French", "city"],
  },
  {
    question: "How do I make a cup of tea?",
    topicWords: ["tea", "water", "cup", "boil", "kettle", "leaves", "bag", "hot"],
  },
  {
    question: "What should I do if it starts to rain?",
    topicWords: ["rain", "umbrella", "wet", "coat", "inside", "shelter", "dry", "water"],
  },
  {
    question: "Write a short story about a cat.",
    topicWords: ["cat", "kitten", "kitty", "paw", "meow", "whiskers", "purr", "tail"],
  },
  {
    question: "Give three tips for staying healthy.",
    topicWords: ["health", "healthy", "exercise", "eat", "sleep", "water", "food", "diet"],
  },
  {
    question: "Why do we need to sleep?",
    topicWords: ["sleep", "rest", "body", "brain", "tired", "energy", "night"],
  },
  {
    question: "What is a synonym for happy?",
    topicWords: ["happy", "glad", "joyful", "cheerful", "content", "pleased", "synonym"],
  },
  {
    question: "Explain how a plant grows from a seed.",
    topicWords: ["seed", "plant", "grow", "root", "soil", "water", "sun", "leaf", "leaves"],
  },
  {
    question: "What do bees do?",
    topicWords: ["bee", "honey", "flower", "pollen", "hive", "nectar", "pollinate"],
  },
  {
    question: "Use the word 'bright' in a sentence.",
    topicWords: ["bright", "brightly", "brightness"],
  },
  {
    question: "How can I be a good friend?",
    topicWords: ["friend", "friendship", "listen", "kind", "help", "trust", "care"],
  },
  {
    question: "What happens when water gets very cold?",
    topicWords: ["water", "cold", "ice", "freeze", "frozen", "solid", "temperature"],
  },
  {
    question: "Tell me a joke about a dog.",
    topicWords: ["dog", "puppy", "bark", "woof", "bone", "tail", "paw"],
  },
  {
    question: "Why do people go to school?",
    topicWords: ["school", "learn", "education", "teacher", "student", "knowledge", "class"],
  },
  {
    question: "What is the opposite of cold?",
    topicWords: ["hot", "warm", "heat", "opposite", "cold"],
  },
  {
    question: "Describe the ocean.",
    topicWords: ["ocean", "sea", "water", "wave", "fish", "salt", "blue", "beach"],
  },
  {
    question: "How do birds fly?",
    topicWords: ["bird", "fly", "flight", "wing", "feather", "air", "flap"],
  },
  {
    question: "What is a good breakfast?",
    topicWords: ["breakfast", "egg", "bread", "toast", "fruit", "milk", "cereal", "eat", "food"],
  },
  {
    question: "Why should we save energy at home?",
    topicWords: ["energy", "electricity", "power", "save", "light", "money", "home", "planet"],
  },
];
