package dev.kaon.spark;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;

/**
 * Reflection over Scala and Spark values, so that one jar runs on Spark built for Scala 2.12
 * (3.5) and Scala 2.13 (4.x).
 *
 * <p>The rule: the listener calls Spark methods directly only when their signature mentions
 * nothing but Java types, primitives and Spark classes (e.g. {@code jobId()}, {@code
 * StageInfo.numTasks()}). A method whose signature mentions a Scala type ({@code Seq}, {@code
 * Option}, ...) is called through here: its descriptor differs between the two Scala versions
 * ({@code stageInfos()} returns {@code scala.collection.Seq} on 2.12 and {@code
 * scala.collection.immutable.Seq} on 2.13), so a compiled call to it throws NoSuchMethodError on
 * the other version. Reflection resolves by name at run time. {@code scala.Option} is stable in
 * both, but going through here too keeps the rule simple and checkable (build.sh rejects class
 * files that reference {@code scala/} members directly).
 */
final class Reflect {
    private Reflect() {}

    static Class<?> load(String name) throws ClassNotFoundException {
        return Class.forName(name, false, Reflect.class.getClassLoader());
    }

    /** Calls the public no-argument method {@code name} on {@code target}. */
    static Object call(Object target, String name) throws ReflectiveOperationException {
        Method m = target.getClass().getMethod(name);
        try {
            return m.invoke(target);
        } catch (IllegalAccessException e) {
            // The method is public but declared in a class that is not (e.g. a Scala anonymous
            // class or a private implementation class): call it through a public supertype.
            Method p = publicDeclaration(target.getClass(), name);
            if (p != null) {
                return p.invoke(target);
            }
            m.setAccessible(true);
            return m.invoke(target);
        }
    }

    private static Method publicDeclaration(Class<?> c, String name) {
        for (Class<?> k = c; k != null; k = k.getSuperclass()) {
            if (Modifier.isPublic(k.getModifiers())) {
                try {
                    return k.getMethod(name);
                } catch (NoSuchMethodException ignored) {
                    // keep looking
                }
            }
            for (Class<?> i : k.getInterfaces()) {
                Method m = publicDeclaration(i, name);
                if (m != null) {
                    return m;
                }
            }
        }
        return null;
    }

    /** The value in a {@code scala.Option}, or null for {@code None}; other values pass through. */
    static Object option(Object value) throws ReflectiveOperationException {
        if (value == null) {
            return null;
        }
        Class<?> option = load("scala.Option");
        if (!option.isInstance(value)) {
            return value;
        }
        if ((Boolean) option.getMethod("isEmpty").invoke(value)) {
            return null;
        }
        return option.getMethod("get").invoke(value);
    }

    /**
     * The elements of a Scala collection (anything implementing {@code scala.collection.Iterable}
     * on either Scala version) or of a Java {@code Iterable}. The methods are looked up on the
     * public Scala interfaces, not on the runtime class, which may be non-public.
     */
    static List<Object> elements(Object collection) throws ReflectiveOperationException {
        List<Object> out = new ArrayList<>();
        if (collection == null) {
            return out;
        }
        if (collection instanceof Iterable) {
            for (Object o : (Iterable<?>) collection) {
                out.add(o);
            }
            return out;
        }
        // 2.12 declares iterator() on scala.collection.Iterable; 2.13 inherits it from
        // IterableOnce, which getMethod on the interface also finds.
        Method iteratorOf = load("scala.collection.Iterable").getMethod("iterator");
        Class<?> iteratorClass = load("scala.collection.Iterator");
        Method hasNext = iteratorClass.getMethod("hasNext");
        Method next = iteratorClass.getMethod("next");
        Object it = iteratorOf.invoke(collection);
        while ((Boolean) hasNext.invoke(it)) {
            out.add(next.invoke(it));
        }
        return out;
    }

    /** The singleton instance of the Scala object {@code name} (its class is {@code name$}). */
    static Object module(String name) throws ReflectiveOperationException {
        return load(name + "$").getField("MODULE$").get(null);
    }

    /**
     * The active SparkContext of this JVM, or null. Uses {@code SparkContext.getActive} (an
     * {@code Option}) rather than {@code getOrCreate()}, which would create a context.
     *
     * <p>getActive synchronizes on the lock SparkContext.getOrCreate holds while it constructs a
     * context: never call this from the listener-bus thread (a context failing in its
     * constructor stops the bus and waits for that thread, which would then wait for the lock).
     */
    static Object activeSparkContext() throws ReflectiveOperationException {
        return option(call(module("org.apache.spark.SparkContext"), "getActive"));
    }

    /** Spark's version (org.apache.spark.SPARK_VERSION), or null. */
    static String sparkVersion() {
        try {
            return (String) call(module("org.apache.spark.package"), "SPARK_VERSION");
        } catch (Throwable t) {
            return null;
        }
    }

    /** The real failure behind a reflective call's InvocationTargetException, for logs. */
    static Throwable cause(Throwable t) {
        return t instanceof InvocationTargetException && t.getCause() != null ? t.getCause() : t;
    }
}
